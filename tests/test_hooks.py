"""Every hook in optreg.hookspecs is documented in docs/writing-plugins.md and has a behaviour test.

The hooks are read from the module at run time, so a hook added to the core
without a section in the docs (signature and example) or without an entry in
HOOK_CHECKS below fails here. The docs' example for each hook is executed and
registered, so the examples cannot rot either.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
import torch

import optreg
from optreg import hookspecs
from optreg.parallel import ParallelismStrategy

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
HOOKS = sorted(
    name for name, obj in vars(hookspecs).items() if inspect.isfunction(obj) and hasattr(obj, "optreg_spec")
)
KIND_OF = {
    "optreg_register_optimizers": "optimizer",
    "optreg_register_schedulers": "scheduler",
    "optreg_register_parallelism_strategies": "parallelism",
    "optreg_register_tables": "table",
}


def test_hooks_are_found() -> None:
    assert set(KIND_OF) | {"optreg_register_commands"} <= set(HOOKS), HOOKS


def _signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def _section(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### `{name}`\n(.*?)(?=^##+ |\Z)", text, re.S | re.M)
    assert match, f"docs/writing-plugins.md has no '### `{name}`' section for hook {name}"
    return match.group(1)


def _example(name: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", _section(name), re.S)
    assert blocks, f"the {name} section of docs/writing-plugins.md has no python example"
    return blocks[0]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    section = _section(hook)
    assert _signature(hook) in section, f"the {hook} section must show its signature {_signature(hook)}"
    example = _example(hook)
    assert "@optreg.hookimpl" in example and f"def {hook}(" in example


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_example_in_the_docs_works(hook: str) -> None:
    module = types.ModuleType(f"docs_example_{hook}")
    sys.modules[module.__name__] = module  # attrs resolves string annotations through sys.modules
    try:
        exec(compile(_example(hook), f"<writing-plugins.md: {hook}>", "exec"), module.__dict__)
        registry = optreg.Registry(entry_points=False)
        info = registry.add_plugin(module, name="docs_example")
    finally:
        del sys.modules[module.__name__]
    assert info.ok, info.error
    provided = {kind: names for kind, names in info.provides.items() if names}
    if hook == "optreg_register_commands":  # adds commands, registers no name
        assert not provided, provided
        from optreg.cli import build_parser

        parser = build_parser(registry)
        assert "hello" in parser._subparsers._group_actions[0].choices
        return
    assert list(provided) == [KIND_OF[hook]], provided


# ---------------------------------------------------------------- behaviour, one check per hook


@attrs.frozen(kw_only=True)
class HalvingSGDSpec(optreg.OptimizerSpec):
    """SGD whose LR is halved for 1-D parameters (built through create())."""

    TYPE: ClassVar[str] = "hooktest_sgd"

    lr: float = optreg.field(0.1, ge=0, doc="Learning rate.")

    def create(self, param_groups, context):
        return torch.optim.SGD(param_groups, lr=self.lr)


@attrs.frozen(kw_only=True)
class StepDownSpec(optreg.SchedulerSpec):
    """LR * 0.1 from `at` on."""

    TYPE: ClassVar[str] = "hooktest_step_down"

    at: int = optreg.field(2, ge=0, doc="When to drop.")

    def get_lr(self, initial_lr: float, current: float, t_max: float | None) -> float:
        return initial_lr * (0.1 if current >= self.at else 1.0)


class MarkingStrategy(ParallelismStrategy):
    def apply(self, model):
        model.marked_by_strategy = True
        return model


@attrs.frozen(kw_only=True)
class MarkingSpec(optreg.ParallelismSpec):
    """Marks the model it is applied to."""

    TYPE: ClassVar[str] = "hooktest_marking"

    def create(self) -> ParallelismStrategy:
        return MarkingStrategy()


class Plugin:
    """A plugin object (not a module): hookimpls as methods work too."""

    @optreg.hookimpl
    def optreg_register_optimizers(self, register):
        register(HalvingSGDSpec, aliases=("hooktest_sgd_alias",))

    @optreg.hookimpl
    def optreg_register_schedulers(self, register):
        register(StepDownSpec)

    @optreg.hookimpl
    def optreg_register_parallelism_strategies(self, register):
        register(MarkingSpec)

    @optreg.hookimpl
    def optreg_register_tables(self, register):
        register("hooktest_eval", EvalTable)

    @optreg.hookimpl
    def optreg_register_commands(self, subparsers):
        parser = subparsers.add_parser("hooktest-echo", help="print its argument")
        parser.add_argument("word")
        parser.set_defaults(func=lambda args: print(args.word) or 0)


@attrs.frozen(kw_only=True)
class EvalTable:
    """A plugin's [hooktest_eval] table."""

    every: int = optreg.field(10, ge=1, doc="Steps between evaluations.")

    def run_length(self, units: str, data_parallel_size: int = 1) -> int:
        return 40


@pytest.fixture
def registry() -> optreg.Registry:
    reg = optreg.Registry(entry_points=False)
    info = reg.add_plugin(Plugin(), name="hooktest", distribution="optreg-hooktest", version="9.9")
    assert info.ok, info.error
    return reg


def check_optimizers(reg: optreg.Registry) -> None:
    assert reg.provider("optimizer", "hooktest_sgd").distribution == "optreg-hooktest"
    assert reg.lookup("optimizer", "hooktest_sgd_alias") is HalvingSGDSpec
    param = torch.nn.Parameter(torch.ones(2))
    opt = reg.build_optimizer({"type": "hooktest_sgd_alias", "lr": 0.5}, [param])
    param.grad = torch.ones(2)
    opt.step()
    assert param.tolist() == [0.5, 0.5]


def check_schedulers(reg: optreg.Registry) -> None:
    assert reg.provider("scheduler", "hooktest_step_down").name == "hooktest"
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = reg.build_scheduler({"type": "hooktest_step_down", "at": 1}, opt)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.1, 0.1])


def check_parallelism_strategies(reg: optreg.Registry) -> None:
    spec = reg.parse_spec('[optimizer]\ntype = "hooktest_sgd"\n[parallelism]\ntype = "hooktest_marking"\n')
    built = spec.build(torch.nn.Linear(2, 2))
    assert isinstance(built.strategy, MarkingStrategy) and built.model.marked_by_strategy


def check_tables(reg: optreg.Registry) -> None:
    spec = reg.parse_spec('[optimizer]\ntype = "hooktest_sgd"\n[hooktest_eval]\nevery = 5\n')
    assert spec.hooktest_eval == EvalTable(every=5)
    assert reg.parse_spec(optreg.dump_spec(spec)) == spec
    with pytest.raises(optreg.SpecError, match="must be >= 1"):
        reg.parse_spec('[optimizer]\ntype = "hooktest_sgd"\n[hooktest_eval]\nevery = 0\n')
    # the table's run length spans a schedule that sets no t_max
    built = reg.parse_spec('[optimizer]\ntype = "hooktest_sgd"\n').build(torch.nn.Linear(2, 2))
    assert built.scheduler.t_max == 40


def check_commands(reg: optreg.Registry) -> None:
    import contextlib
    import io

    from optreg.cli import build_parser

    args = build_parser(reg).parse_args(["hooktest-echo", "hi"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    assert out.getvalue() == "hi\n"


HOOK_CHECKS: dict[str, Callable[[optreg.Registry], None]] = {
    "optreg_register_optimizers": check_optimizers,
    "optreg_register_schedulers": check_schedulers,
    "optreg_register_parallelism_strategies": check_parallelism_strategies,
    "optreg_register_tables": check_tables,
    "optreg_register_commands": check_commands,
}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_behaviour(hook: str, registry: optreg.Registry) -> None:
    check = HOOK_CHECKS.get(hook)
    if check is None:
        pytest.fail(f"hook {hook} has no behaviour test: add a check for it to HOOK_CHECKS in tests/test_hooks.py")
    check(registry)


def test_each_hookimpl_is_attributed_to_its_own_plugin() -> None:
    """Two plugins, one hook: the registry still knows which plugin provided which name."""

    @attrs.frozen(kw_only=True)
    class Other(optreg.OptimizerSpec):
        """Another optimizer."""

        TYPE: ClassVar[str] = "hooktest_other"
        optimizer_class: ClassVar[type] = torch.optim.SGD

        lr: float = optreg.field(0.1, ge=0, doc="Learning rate.")

    other = types.SimpleNamespace(optreg_register_optimizers=optreg.hookimpl(lambda register: register(Other)))
    reg = optreg.Registry(entry_points=False)
    reg.add_plugin(Plugin(), name="first", distribution="optreg-first")
    reg.add_plugin(other, name="second", distribution="optreg-second")
    assert reg.provider("optimizer", "hooktest_sgd").distribution == "optreg-first"
    assert reg.provider("optimizer", "hooktest_other").distribution == "optreg-second"


def test_a_misspelled_hook_rejects_the_plugin() -> None:
    typo = types.SimpleNamespace(optreg_register_optimiser=optreg.hookimpl(lambda register: None))
    reg = optreg.Registry(entry_points=False)
    info = reg.add_plugin(typo, name="typo")
    assert not info.ok and "unknown hook" in info.error and "optreg_register_optimiser" in info.error
    assert reg.names("optimizer") == ["sgd"]
