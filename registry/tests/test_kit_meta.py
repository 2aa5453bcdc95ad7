"""The conformance kit must fail on wrong optimizers and schedules: each flaw is caught by its check."""

from __future__ import annotations

INNER = '''
from typing import ClassVar, Literal

import attrs
import torch

import optreg
from optreg import Registry
from optreg.compiling import can_flatten, flat, run_compiled, use_compile
from optreg.testing import OptimizerCase, OptimizerConformance, SchedulerCase, SchedulerConformance

#: The flaws whose spec has a `compile` option (the others stay eager: no compiling in their checks).
COMPILED = ("none", "compiled_mismatch", "compile_ignored", "uncompilable")


def momentum_kernel(p, g, buf, lr, momentum, decay, flaw):
    """The compiled path's step of one tensor: the eager step, but for the flaws."""
    if flaw == "uncompilable":
        torch._dynamo.graph_break()  # fullgraph cannot compile it: the step falls back to eager (with a warning)
    buf.mul_(momentum).add_(g)
    if flaw == "compiled_mismatch" and torch.compiler.is_compiling():
        lr = lr * 1.01  # the compiled update is not the eager one
    p.add_(buf, alpha=lr)
    p.mul_(decay)


class FlawedSGD(torch.optim.Optimizer):
    """Momentum SGD with one deliberate flaw (or none)."""

    def __init__(self, params, lr=0.02, weight_decay=0.0, maximize=False, foreach=None, window=8, seed=0, flaw="",
                 compile="auto"):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, maximize=maximize, foreach=foreach,
                                      window=window, seed=seed, flaw=flaw, compile=compile))
        self.hidden = {}
        if flaw == "lost_attribute":
            self.momentum = 0.9  # an attribute torch does not pickle

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("hidden", {})

    def state_dict(self):
        if self.defaults["flaw"] == "skips_hooks":
            return {"state": {i: dict(v) for i, v in enumerate(self.state.values())},
                    "param_groups": [{**{k: v for k, v in g.items() if k != "params"},
                                      "params": list(range(len(g["params"])))} for g in self.param_groups]}
        return super().state_dict()

    def add_param_group(self, param_group):
        if self.defaults.get("flaw") == "raw_add_group" and hasattr(self, "param_groups"):
            self.param_groups.append(dict(param_group))  # no defaults filled in
            return
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None, *, step_factor=None):
        flaw = self.defaults["flaw"]
        loss = None
        if closure is not None and flaw != "no_closure":
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = self.defaults["lr"] if flaw == "ignores_groups" else group["lr"]
            if flaw == "foreach_mismatch" and group["foreach"]:
                lr = lr * 1.01
            momentum = self.momentum if flaw == "lost_attribute" else 0.9
            compiling = use_compile(group["compile"], group["params"]) and flaw != "compile_ignored"
            calls = []
            for p in group["params"]:
                if p.grad is None:
                    if flaw == "eager_decay":
                        p.mul_(1 - lr * 0.1)
                    continue
                g = p.grad
                if group["maximize"] and flaw != "ignores_maximize":
                    g = -g
                if flaw == "conj" and torch.is_complex(g):
                    g = g.conj()  # right for real gradients, silently wrong for complex ones
                if flaw == "empty_crash":
                    g = g / g.abs().max()
                if flaw == "unbounded_size":
                    self.recent = torch.zeros(group["window"], dtype=p.dtype)  # sized by an unbounded option
                if flaw == "unbounded_loop":
                    for _ in range(group["window"]):  # a Python loop as long as an unbounded option: a hang
                        pass
                if flaw == "forgetful":
                    buf = self.hidden.setdefault(id(p), torch.zeros_like(p))
                else:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                sign = 1.0 if flaw == "ascent" else -1.0
                if flaw == "float32_coefficient":
                    coefficient = torch.where(g.isfinite().all(), momentum, 1.0)  # a float32 0.9
                    buf.mul_(coefficient).add_(g)
                    p.add_(buf, alpha=sign * lr)
                    p.mul_(1 - lr * group["weight_decay"])
                elif flaw == "sign_freeze" and step_factor is None:
                    buf.mul_(momentum).add_(g)
                    p.add_(torch.sign(buf), alpha=sign * lr * 0.1)  # sign(NaN) is 0: the coordinate freezes
                elif compiling and step_factor is None and can_flatten(p, g, buf):
                    calls.append((flat(p), flat(g), flat(buf), sign * lr, momentum, 1 - lr * group["weight_decay"],
                                  flaw))
                elif step_factor is None or flaw == "leaky_skip":
                    buf.mul_(momentum).add_(g)
                    p.add_(buf, alpha=sign * lr)
                    p.mul_(1 - lr * group["weight_decay"])
                else:
                    if flaw == "host_sync" and step_factor.item() == 0:
                        continue
                    take = step_factor != 0
                    g = torch.where(take, g, torch.zeros_like(g))
                    buf.copy_(torch.where(take, buf * momentum + g, buf))
                    p.add_(buf * step_factor, alpha=sign * lr)
                    p.mul_(1 - lr * group["weight_decay"] * step_factor)
                if flaw == "drift":
                    p.add_(1e-3)
                if flaw == "upcast":
                    p.data = p.data.float()
            if calls:
                run_compiled(momentum_kernel, calls)
        return loss


class DriftedDefaults(FlawedSGD):
    """Its constructor's default LR drifted away from the spec's."""

    def __init__(self, params, lr=0.01, **kwargs):
        super().__init__(params, lr=lr, **kwargs)


def make_spec(name, flaw):
    @attrs.frozen(kw_only=True)
    class Spec(optreg.OptimizerSpec):
        TYPE: ClassVar[str] = name
        CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"foreach", "step_factor"})
        lr: float = optreg.field(0.02, ge=0)
        weight_decay: float = optreg.field(0.0, ge=0)
        maximize: bool = optreg.field(False)
        foreach: bool | None = optreg.field(None, per_group=False)
        # a window length: bounded, except in the flaw that forgets to (a seed sizes nothing: exempt by name)
        window: int = optreg.field(8, ge=1, le=None if flaw.startswith("unbounded") else 2**20, per_group=False)
        seed: int = optreg.field(0, ge=0, per_group=False)
        if flaw in COMPILED:
            compile: bool | Literal["auto"] = optreg.field("auto", per_group=False)

        def param_state_layout(self, param, options):
            # the flaw declares a layout that forgets the momentum buffer the optimizer keeps
            return [] if flaw == "layout_misses_state" else [param.like("momentum_buffer")]

        def create(self, groups, context):
            cls = DriftedDefaults if flaw == "drifted_default" else FlawedSGD
            return cls(groups, flaw=flaw, **self.optimizer_kwargs())

    return Spec


FLAWS = ["none", "ascent", "forgetful", "eager_decay", "drift", "upcast", "ignores_groups", "no_closure",
         "empty_crash", "foreach_mismatch", "leaky_skip", "lost_attribute", "float32_coefficient", "host_sync",
         "conj", "raw_add_group", "skips_hooks", "ignores_maximize", "drifted_default", "sign_freeze",
         "unbounded_size", "unbounded_loop", "layout_misses_state", "compiled_mismatch",
         "compile_ignored", "uncompilable"]


@attrs.frozen(kw_only=True)
class Stateful(optreg.SchedulerSpec):
    TYPE: ClassVar[str] = "stateful"
    calls: list = attrs.field(factory=list, eq=False, metadata={"internal": True})

    def get_lr(self, initial_lr, current, t_max):
        self.calls.append(current)
        return initial_lr * 0.99 ** len(self.calls)


@attrs.frozen(kw_only=True)
class Negative(optreg.SchedulerSpec):
    TYPE: ClassVar[str] = "negative"

    def get_lr(self, initial_lr, current, t_max):
        return initial_lr * (1 - current / 10)


@optreg.hookimpl
def optreg_register_optimizers(register):
    for flaw in FLAWS:
        register(make_spec(f"sgd_{flaw}", flaw))
    register(make_spec("sgd_uncovered", "none"))  # registered, but no suite class has a case for it


@optreg.hookimpl
def optreg_register_schedulers(register):
    register(Stateful)
    register(Negative)


import sys
PLUGIN = sys.modules[__name__]


def flaws_registry():
    registry = Registry(entry_points=False)
    registry.add_plugin(PLUGIN, name="flaws", distribution="optreg-flaws")
    return registry


class TestFlaws(OptimizerConformance):
    distribution = "optreg-flaws"
    cases = [OptimizerCase(spec={"type": f"sgd_{flaw}"}, id=flaw, descent={"rosenbrock": {"lr": 1e-4}})
             for flaw in FLAWS]

    def make_registry(self):
        return flaws_registry()


class TestNarrowing(OptimizerConformance):
    """A case may narrow its spec's capabilities (this one has no step_factor checks)."""

    cases = [OptimizerCase(spec={"type": "sgd_none"}, capabilities={"foreach"}, id="narrowed",
                           descent={"rosenbrock": {"lr": 1e-4}})]

    def make_registry(self):
        return flaws_registry()


class TestScheduleFlaws(SchedulerConformance):
    cases = [
        SchedulerCase(spec={"type": "stateful"}, t_max=20, expected={0: 1.0, 5: 1.0}, id="stateful"),
        SchedulerCase(spec={"type": "negative"}, t_max=20, id="negative"),
    ]

    def make_registry(self):
        return Registry(plugins=[PLUGIN], entry_points=False)
'''

# check -> the flaws it must catch (a check may also fail for other flaws; these are the ones it owns)
EXPECTED = {
    "test_descent_quadratic": {"ascent", "no_closure"},
    "test_descent_mlp": {"ascent", "no_closure"},
    "test_resume_equals_unbroken_run": {"forgetful"},
    "test_none_grads_change_nothing": {"eager_decay"},
    "test_zero_grads_change_nothing": {"drift"},
    "test_bf16_params_stay_bf16": {"upcast"},
    "test_group_overrides_honoured": {"ignores_groups"},
    "test_closure_returns_loss": {"no_closure"},
    "test_zero_size_and_frozen_params": {"empty_crash"},
    "test_foreach_parity": {"foreach_mismatch"},
    "test_step_factor": {"leaky_skip", "drift"},
    "test_deepcopy_and_pickle_continue": {"lost_attribute"},
    "test_float64_step_stays_float64": {"float32_coefficient"},
    "test_step_factor_step_needs_no_host_sync": {"host_sync"},
    "test_complex_params": {"conj"},
    "test_add_param_group_then_step": {"raw_add_group"},
    "test_state_dict_hooks_fire": {"skips_hooks"},
    "test_maximize_equals_minimizing_the_negated_loss": {"ignores_maximize"},
    "test_spec_defaults_agree_with_the_optimizer": {"drifted_default"},
    "test_a_non_finite_gradient_is_never_silently_frozen": {"sign_freeze"},
    "test_huge_sizes_rejected": {"unbounded_size", "unbounded_loop"},
    "test_state_estimate_matches_a_step": {"layout_misses_state"},
    "test_compiled_parity": {"compiled_mismatch", "compile_ignored", "uncompilable"},
}


def test_kit_catches_every_flaw(pytester, monkeypatch):
    monkeypatch.setenv("OPTREG_KIT_HANG_SECONDS", "2")  # the seeded hang (unbounded_loop) is caught in 2 s, not 20
    pytester.makeconftest('pytest_plugins = ["optreg.testing.plugin"]\n')
    pytester.makepyfile(test_flaws=INNER)
    # A subprocess, not in-process: restoring sys.modules afterwards would make torch re-import
    # native extensions (triton), which aborts the interpreter.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rA")
    failed: dict[str, set[str]] = {}
    for line in result.outlines:
        outcome, _, rest = line.partition(" ")
        if outcome not in ("PASSED", "FAILED") or "::" not in rest:
            continue
        name, _, case = rest.split(" - ")[0].split("::")[-1].partition("[")
        if outcome == "FAILED":
            failed.setdefault(name, set()).add(case.rstrip("]").split("-")[0])  # drop ids of extra params
    assert any(line.startswith("PASSED ") for line in result.outlines), result.stdout.str()[-2000:]
    for check, flaws in EXPECTED.items():
        caught = failed.get(check, set())
        assert flaws <= caught, f"{check} did not catch {sorted(flaws - caught)}"
    correct_failures = sorted(check for check, cases in failed.items() if "none" in cases)
    assert not correct_failures, f"the correct optimizer failed {correct_failures}"
    # A flawed optimizer must not slip through: every flaw fails at least one check.
    all_failed = set().union(*failed.values())
    flaws = {flaw for checks in EXPECTED.values() for flaw in checks}
    assert flaws <= all_failed
    # the name registered without a case fails the coverage check (the class check has no case id)
    assert "" in failed.get("test_every_registered_name_has_a_case", set()), failed
    assert "sgd_uncovered" in result.stdout.str()
    # narrowing: the narrowed case ran the foreach check but no step_factor check
    assert "TestNarrowing::test_foreach_parity[narrowed] PASSED" in result.stdout.str() or any(
        "TestNarrowing::test_foreach_parity[narrowed]" in line and line.startswith("PASSED")
        for line in result.outlines
    )
    assert not any("TestNarrowing::test_step_factor" in line and "[narrowed]" in line for line in result.outlines)
    # `compile` is inferred from the spec's option, on top of a narrowed list: only the specs with one check it
    assert any(line.startswith("PASSED ") and "TestNarrowing::test_compiled_parity[narrowed]" in line
               for line in result.outlines), result.stdout.str()[-2000:]
    assert not any("test_compiled_parity[ascent]" in line for line in result.outlines)
    assert "stateful" in failed.get("test_resume_gives_same_lrs", set())
    assert "stateful" in failed.get("test_expected_values", set())
    assert "negative" in failed.get("test_lr_finite_and_nonnegative", set())


FUZZ_INNER = '''
from typing import ClassVar

import attrs
import torch

import optreg
from optreg import Registry
from optreg.testing import OptimizerCase, OptimizerConformance

#: A lookup keyed by the option's value: any momentum but these raises KeyError in the converter.
NAMES = {0.0: "plain", 0.9: "heavy ball"}


def make_spec(name, flaw):
    @attrs.frozen(kw_only=True)
    class Spec(optreg.OptimizerSpec):
        TYPE: ClassVar[str] = name
        lr: float = optreg.field(0.02, ge=0)
        momentum: float = optreg.field(0.9, ge=0, lt=1)

        def __attrs_post_init__(self):
            if flaw:
                NAMES[self.momentum]

        def create(self, groups, context):
            return torch.optim.SGD(groups, **self.optimizer_kwargs())

    return Spec


@optreg.hookimpl
def optreg_register_optimizers(register):
    register(make_spec("sgd_fine", False))
    register(make_spec("sgd_key_error", True))


import sys
PLUGIN = sys.modules[__name__]


class TestFuzz(OptimizerConformance):
    cases = [OptimizerCase(spec={"type": "sgd_fine"}, id="fine"),
             OptimizerCase(spec={"type": "sgd_key_error"}, id="key_error")]

    def make_registry(self):
        return Registry(plugins=[PLUGIN], entry_points=False)
'''


def test_kit_fuzz_check_catches_a_key_error_in_the_converter(pytester):
    """A spec whose ``__attrs_post_init__`` raises KeyError for some values (which the converter turns into a
    SpecError reading ``$.optimizer: 0.5``) fails the kit's fuzz check; the same spec without the flaw passes."""
    pytester.makeconftest('pytest_plugins = ["optreg.testing.plugin"]\n')
    pytester.makepyfile(test_fuzz_flaw=FUZZ_INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rA", "-k", "test_fuzz_specs")
    out = result.stdout.str()
    assert any(line.startswith("PASSED") and "test_fuzz_specs[fine]" in line for line in result.outlines), out[-3000:]
    assert any(line.startswith("FAILED") and "test_fuzz_specs[key_error]" in line for line in result.outlines), (
        out[-3000:]
    )
    assert "hides a crash (KeyError" in out, out[-3000:]
