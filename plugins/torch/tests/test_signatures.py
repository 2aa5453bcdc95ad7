"""The specs against the installed torch's signatures: a torch release that adds, renames or drops an
argument of an optimizer or scheduler, changes a default, or adds an optimizer or scheduler class, fails
here until the spec (or the lists below) says what to do with it.

For each spec: every argument of the torch constructor is a field of the same name, a renamed field
(``RENAMED``), or deliberately left out with the reason (``LEFT_OUT``); every option the spec passes is
an argument of the constructor; and a field of the same name has torch's default (or is listed in
``DEFAULTS_DIFFER`` with why). The check itself is shown to fail on a class with an argument more.
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import pytest
import torch
from optreg_torch.specs import OPTIMIZER_SPECS, SCHEDULER_SPECS
from optreg_torch.specs.schedulers import INITIAL_LR, T_MAX
from torch.optim import lr_scheduler as L

import optreg
from optreg.specs import spec_fields

#: torch.optim optimizers registered by other distributions (not re-registered here), by their optreg name.
ELSEWHERE = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "Muon": "muon"}
#: torch LR schedulers that are not optreg schedules here, and why.
SCHEDULERS_LEFT_OUT = {
    "LRScheduler": "the base class",
    "LambdaLR": "a Python callable (lr_lambda) has no TOML form; write a schedule spec instead",
    "MultiplicativeLR": "a Python callable (lr_lambda) has no TOML form",
    "SequentialLR": "optreg-schedules' `sequential` (and `composable`) chain schedules by name",
    "ChainedScheduler": "multiplies schedulers' factors at each step; no spec form (chain them with `sequential`)",
    "ReduceLROnPlateau": "a function of the validation metric's history, not of the step count: not a stateless "
    "schedule (see docs/torch.md for using torch's class on an optreg optimizer)",
    "ExponentialLR": "fits the model but is not registered yet (not in issue 18's list; its natural name "
    "`exponential` is optreg-schedules' LR range test): `step` with step_size = 1 gives its LRs",
    "ConstantLR": "fits the model but is not registered yet (not in issue 18's list)",
}
#: Scheduler arguments that are part of every torch scheduler but no option here.
SCHEDULER_COMMON = {"self", "optimizer"}


def _normalized(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normalized(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def _default(field: attrs.Attribute) -> Any:
    return field.default.factory() if isinstance(field.default, attrs.Factory) else field.default


def optimizer_problems(spec_cls: type, torch_cls: type) -> list[str]:
    """What does not match between an optimizer spec and the torch class it builds (empty when all is well)."""
    signature = inspect.signature(torch_cls.__init__)
    arguments = {n: p for n, p in signature.parameters.items() if n not in ("self", "params")}
    fields = {f.name: f for f in spec_fields(spec_cls)}
    passed = {n for n, f in fields.items() if f.metadata.get("kwarg", True)}
    renamed = {target for targets in spec_cls.RENAMED.values() for target in targets}
    problems = []
    for name in arguments:
        places = [name in passed, name in spec_cls.RENAMED, name in spec_cls.LEFT_OUT]
        if sum(places) != 1:
            problems.append(f"{torch_cls.__name__}({name}=...) is {'not' if not any(places) else 'doubly'} accounted "
                            "for: make it a field, or list it in RENAMED or LEFT_OUT with the reason")
    for name in sorted(passed - set(arguments)):
        problems.append(f"field {name!r} is passed to {torch_cls.__name__}, which takes no such argument")
    for name in sorted(renamed - set(fields)):
        problems.append(f"RENAMED names {name!r}, which is not a field")
    for name in sorted(set(spec_cls.LEFT_OUT) - set(arguments)):
        problems.append(f"LEFT_OUT lists {name!r}, which {torch_cls.__name__} no longer takes")
    for name in sorted(passed & set(arguments)):
        want = arguments[name].default
        if want is inspect.Parameter.empty:
            continue
        if _normalized(_default(fields[name])) != _normalized(want):
            problems.append(f"{name}: the spec's default {_default(fields[name])!r} is not torch's {want!r}")
    for name, targets in spec_cls.RENAMED.items():
        want = arguments[name].default if name in arguments else inspect.Parameter.empty
        got = tuple(_default(fields[t]) for t in targets if t in fields)
        if want is not inspect.Parameter.empty and _normalized(got if len(got) > 1 else got[0]) != _normalized(want):
            problems.append(f"{name}: the spec's defaults {got!r} are not torch's {want!r}")
    return problems


@pytest.mark.parametrize("spec_cls", OPTIMIZER_SPECS, ids=lambda c: c.TYPE)
def test_optimizer_spec_matches_the_torch_signature(spec_cls: type) -> None:
    torch_cls = getattr(torch.optim, spec_cls.TORCH_CLASS)
    assert not optimizer_problems(spec_cls, torch_cls)
    for name, why in spec_cls.LEFT_OUT.items():
        assert len(why) > 20, f"{spec_cls.TYPE}: say why {name} is left out"


def test_the_check_notices_an_argument_torch_adds_or_a_default_it_changes() -> None:
    from optreg_torch.specs import RAdamSpec

    class NewerRAdam(torch.optim.RAdam):
        def __init__(self, params: Any, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                     weight_decay: float = 0, decoupled_weight_decay: bool = False, *, foreach=None,
                     maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                     amsgrad: bool = False) -> None:
            super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay, foreach=foreach,
                             maximize=maximize, capturable=capturable, differentiable=differentiable)

    problems = optimizer_problems(RAdamSpec, NewerRAdam)
    assert len(problems) == 1 and "amsgrad" in problems[0]

    class RetunedRAdam(torch.optim.RAdam):
        def __init__(self, params: Any, lr: float = 3e-4, betas=(0.9, 0.999), eps: float = 1e-8,
                     weight_decay: float = 0, decoupled_weight_decay: bool = False, *, foreach=None,
                     maximize: bool = False, capturable: bool = False, differentiable: bool = False) -> None:
            super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay, foreach=foreach,
                             maximize=maximize, capturable=capturable, differentiable=differentiable)

    problems = optimizer_problems(RAdamSpec, RetunedRAdam)
    assert len(problems) == 1 and "lr" in problems[0] and "0.0003" in problems[0]


def test_every_torch_optimizer_is_registered_by_name() -> None:
    """Every ``torch.optim.Optimizer`` of the installed torch is registered: by this plugin or another one."""
    registry = optreg.get_registry()
    here = {cls.TORCH_CLASS: cls.TYPE for cls in OPTIMIZER_SPECS}
    classes = sorted(
        name for name, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
    )
    missing = [c for c in classes if c not in here and c not in ELSEWHERE]
    assert not missing, f"torch.optim has optimizers with no optreg name: {missing}"
    assert not set(here) & set(ELSEWHERE), "an optimizer registered here is also expected elsewhere"
    names = registry.names("optimizer")
    for torch_name, name in {**here, **ELSEWHERE}.items():
        assert name in names, f"torch.optim.{torch_name} has no registered optreg name {name!r}"
    for name in here.values():
        assert registry.provider("optimizer", name).distribution == "optreg-torch"


def scheduler_problems(spec_cls: type, torch_cls: type) -> list[str]:
    """What does not match between a schedule spec and torch's scheduler class."""
    arguments = {n: p for n, p in inspect.signature(torch_cls.__init__).parameters.items() if n not in SCHEDULER_COMMON}
    fields = {f.name: f for f in spec_fields(spec_cls)}
    targets_ok = set(fields) | {INITIAL_LR, T_MAX}
    problems = []
    for name in arguments:
        places = [name in fields, name in spec_cls.RENAMED, name in spec_cls.LEFT_OUT]
        if sum(places) != 1:
            problems.append(f"{torch_cls.__name__}({name}=...) is not accounted for exactly once")
    for name, target in spec_cls.RENAMED.items():
        if target not in targets_ok:
            problems.append(f"RENAMED maps {name!r} to {target!r}, which is neither a field nor {INITIAL_LR!r} / t_max")
    own = set(fields) - {"units", "t_max"} - set(spec_cls.RENAMED.values())
    for name in sorted(own - set(arguments)):
        problems.append(f"field {name!r} is not an argument of {torch_cls.__name__}")
    for name in sorted(set(spec_cls.LEFT_OUT) - set(arguments)):
        problems.append(f"LEFT_OUT lists {name!r}, which {torch_cls.__name__} no longer takes")
    for name in sorted(set(fields) & set(arguments)):
        want = arguments[name].default
        if want is inspect.Parameter.empty or name in spec_cls.DEFAULTS_DIFFER:
            continue
        if _normalized(_default(fields[name])) != _normalized(want):
            problems.append(f"{name}: the spec's default {_default(fields[name])!r} is not torch's {want!r}")
    for name in spec_cls.DEFAULTS_DIFFER:
        if name in arguments and _normalized(_default(fields[name])) == _normalized(arguments[name].default):
            problems.append(f"DEFAULTS_DIFFER lists {name!r}, whose default is torch's")
    return problems


@pytest.mark.parametrize("spec_cls", SCHEDULER_SPECS, ids=lambda c: c.TYPE)
def test_schedule_spec_matches_the_torch_signature(spec_cls: type) -> None:
    assert not scheduler_problems(spec_cls, getattr(L, spec_cls.TORCH_CLASS))


def test_the_scheduler_check_notices_a_new_argument() -> None:
    from optreg_torch.specs import Step

    class NewerStepLR(L.StepLR):
        def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1,
                     warmup: int = 0) -> None:
            super().__init__(optimizer, step_size, gamma, last_epoch)

    problems = scheduler_problems(Step, NewerStepLR)
    assert len(problems) == 1 and "warmup" in problems[0]


def test_every_torch_scheduler_is_a_schedule_or_left_out_with_a_reason() -> None:
    here = {cls.TORCH_CLASS for cls in SCHEDULER_SPECS}
    classes = {
        name for name, obj in vars(L).items()
        if not name.startswith("_") and isinstance(obj, type)
        and (issubclass(obj, L.LRScheduler) or name == "ReduceLROnPlateau")
        and obj.__module__ == L.__name__
    }
    unaccounted = sorted(classes - here - set(SCHEDULERS_LEFT_OUT))
    assert not unaccounted, f"torch schedulers neither registered nor left out with a reason: {unaccounted}"
    assert not here & set(SCHEDULERS_LEFT_OUT)


def test_the_aliases_people_type() -> None:
    registry = optreg.get_registry()
    assert registry.aliases("scheduler")["cosine"] == "cosine_annealing"
    assert registry.aliases("scheduler")["linear"] == "linear_ramp"
    assert registry.spec_class("scheduler", "cosine").TORCH_CLASS == "CosineAnnealingLR"
    spec = registry.parse_spec('schema_version = 1\n[optimizer]\ntype = "sgd"\n[scheduler]\ntype = "cosine"\n')
    assert spec.scheduler.TYPE == "cosine_annealing"
