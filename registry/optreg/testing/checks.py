"""The inherited checks of the conformance kit.

A plugin's suite subclasses :class:`OptimizerConformance` or
:class:`SchedulerConformance`, declares ``cases`` (and ``error_cases``), and
every ``test_*`` method below runs once per case. The parametrization comes from
the pytest plugin ``optreg.testing.plugin``, which the suite opts into with
``pytest_plugins = ["optreg.testing.plugin"]`` in its ``conftest.py``.
"""

from __future__ import annotations

import io
import math
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from optreg.convert import field_types, spec_to_dict
from optreg.errors import SpecError
from optreg.loading import dump_spec
from optreg.registry import Registry
from optreg.specs import OptimizerSpec, RunSpec, SchedulerSpec, spec_fields
from optreg.testing.cases import ErrorCase, OptimizerCase, SchedulerCase
from optreg.testing.problems import TinyRegression, make_problem

__all__ = ["OptimizerConformance", "SchedulerConformance", "assert_state_equal"]

_REGISTRIES: dict[type, Registry] = {}


# ---------------------------------------------------------------- comparison helpers


def assert_state_equal(a: Any, b: Any, path: str = "state", *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Recursively compare state dicts / tensors; exact unless tolerances are given."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), f"{path}: tensor vs {type(b).__name__}"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        if rtol == 0 and atol == 0:
            same = torch.equal(a, b)
            if not same and a.is_floating_point():  # NaN == NaN for state comparisons
                same = bool(((a == b) | (a.isnan() & b.isnan())).all())
            if not same:
                diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
                raise AssertionError(f"{path}: tensors differ (max abs diff {diff:.3e})")
        else:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{path}: {m}")
        return
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping), f"{path}: mapping vs {type(b).__name__}"
        assert set(a) == set(b), f"{path}: keys differ: {sorted(map(str, set(a) ^ set(b)))}"
        for key in a:
            assert_state_equal(a[key], b[key], f"{path}[{key!r}]", rtol=rtol, atol=atol)
        return
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: sequences differ in length"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_state_equal(x, y, f"{path}[{i}]", rtol=rtol, atol=atol)
        return
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    if (rtol or atol) and isinstance(a, float) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=atol), f"{path}: {a!r} != {b!r}"
        return
    assert a == b, f"{path}: {a!r} != {b!r}"


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _train(optimizer: torch.optim.Optimizer, model: nn.Module, start: int, steps: int) -> list[float]:
    """Run ``steps`` optimizer steps with a closure (so loss-needing optimizers get the loss)."""
    losses = []
    for step in range(start, start + steps):

        def closure(step: int = step) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(step)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        losses.append(float(loss.detach()))
    return losses


def _grad_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, **kwargs: Any) -> Any:
    """Step with the gradients already in place; the closure only reports the loss."""
    value = loss.detach()
    return optimizer.step(lambda: value, **kwargs)


def assert_step_factor_contract(build: Callable[[nn.Module], torch.optim.Optimizer]) -> None:
    """The ``step_factor`` contract, on the kit's MLP and ``build(model)``'s optimizer.

    A factor of 1 equals the plain step bit for bit (params and state); a factor of 0 with NaN
    gradients leaves params and state bit-identical; a real step after it equals the plain run's.
    (The kit's ``test_step_factor``; public so a suite can rerun it under another code path.)
    """
    torch.manual_seed(0)
    model_a, model_b = make_problem("mlp"), make_problem("mlp")
    opt_a, opt_b = build(model_a), build(model_b)
    one, zero = torch.ones(()), torch.zeros(())
    for step in range(3):
        for model, opt, kwargs in ((model_a, opt_a, {}), (model_b, opt_b, {"step_factor": one})):
            opt.zero_grad(set_to_none=True)
            loss = model.loss(step)
            loss.backward()
            _grad_step(opt, loss, **kwargs)
    assert_state_equal(_params(model_a), _params(model_b), "params (step_factor=1 vs plain step)")
    assert_state_equal(opt_a.state_dict(), opt_b.state_dict(), "state (step_factor=1 vs plain step)")

    params_before, state_before = _params(model_b), _clone_state(opt_b.state_dict())
    opt_b.zero_grad(set_to_none=True)
    loss = model_b.loss(3)
    loss.backward()
    for p in model_b.parameters():
        p.grad.fill_(float("nan"))
    _grad_step(opt_b, torch.tensor(float("nan")), step_factor=zero)
    assert_state_equal(params_before, _params(model_b), "params after a step_factor=0 step with NaN grads")
    assert_state_equal(state_before, opt_b.state_dict(), "state after a step_factor=0 step with NaN grads")

    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(3)
        loss.backward()
        _grad_step(opt, loss)
    assert_state_equal(_params(model_a), _params(model_b), "params after a skipped step then a real one")


def _requires(capability: str):
    """Mark a check as applying only to cases that declare ``capability`` (the plugin filters the cases)."""

    def mark(func):
        func.optreg_requires = capability
        return func

    return mark


# ---------------------------------------------------------------- the shared part


class _SpecChecks:
    """Discovery, round trip and strictness: the same for every kind."""

    KIND: ClassVar[str] = ""
    BASE: ClassVar[type] = object

    #: The distribution that must provide the names (checked by the discovery test when set).
    distribution: ClassVar[str | None] = None
    error_cases: ClassVar[Sequence[ErrorCase]] = ()

    def make_registry(self) -> Registry:
        """A fresh registry that loads the installed plugins; override to test unpublished code."""
        return Registry()

    @property
    def registry(self) -> Registry:
        cls = type(self)
        if cls not in _REGISTRIES:
            _REGISTRIES[cls] = self.make_registry()
        return _REGISTRIES[cls]

    def spec_of(self, data: Mapping[str, Any]) -> Any:
        return self.registry.structure(dict(data), self.BASE)

    # -- discovery

    def test_discovery(self, case: Any) -> None:
        registry = self.make_registry()
        name = case.spec["type"]
        cls = registry.lookup(self.KIND, name)
        failed = "; ".join(f"{p.name}: {p.error}" for p in registry.failed_plugins)
        assert cls is not None, f"{self.KIND} {name!r} is not registered in a fresh Registry (failed plugins: {failed})"
        if self.distribution is not None:
            owner = registry.provider(self.KIND, cls.TYPE)
            assert owner.distribution == self.distribution, (
                f"{name!r} is provided by {owner.distribution!r}, expected {self.distribution!r}"
            )

    # -- round trip

    def test_round_trip(self, case: Any) -> None:
        spec = self.spec_of(case.spec)
        again = self.spec_of(spec_to_dict(spec))
        assert again == spec, "spec -> dict -> spec changed the spec"
        run = RunSpec(optimizer=spec) if self.KIND == "optimizer" else RunSpec(
            optimizer=self.registry.optimizer_spec({"type": "sgd"}), scheduler=spec
        )
        text = dump_spec(run)
        parsed = self.registry.parse_spec(text)
        got = parsed.optimizer if self.KIND == "optimizer" else parsed.scheduler
        assert got == spec, f"TOML -> spec -> TOML -> spec changed the spec:\n{text}"
        assert dump_spec(parsed) == text, "dumping the re-parsed spec gave different TOML"

    # -- strictness

    def test_unknown_key_rejected(self, case: Any) -> None:
        data = dict(case.spec)
        fields = [f.name for f in spec_fields(self.spec_of(data).__class__)]
        typo = (fields[-1] + "x") if fields else "not_a_field"
        data[typo] = 1
        with pytest.raises(SpecError) as info:
            self.spec_of(data)
        assert info.value.path == f"$.{typo}", info.value
        assert "unknown key" in info.value.message
        if fields:
            assert "did you mean" in info.value.message, info.value.message

    def test_strict_types(self, case: Any) -> None:
        self._skip_if(case, "strict_types")
        cls = type(self.spec_of(case.spec))
        hints = field_types(cls)
        checked = 0
        for f in spec_fields(cls):
            for bad in _bad_values(hints[f.name]):
                data = {**case.spec, f.name: bad}
                with pytest.raises(SpecError) as info:
                    self.spec_of(data)
                paths = [p for p, _ in info.value.errors]
                assert any(p == f"$.{f.name}" or p.startswith(f"$.{f.name}[") for p in paths), (
                    f"{f.name} = {bad!r} was rejected at {paths}, expected $.{f.name}"
                )
                checked += 1
        if not checked:
            pytest.skip("the spec has no scalar fields to check")

    def test_error_case(self, error_case: ErrorCase) -> None:
        with pytest.raises(SpecError) as info:
            self.spec_of(error_case.spec)
        paths = [p for p, _ in info.value.errors]
        assert error_case.path in paths, f"expected an error at {error_case.path}, got {info.value}"
        message = next(m for p, m in info.value.errors if p == error_case.path)
        assert re.search(error_case.match, message), f"{message!r} does not match {error_case.match!r}"

    def _skip_if(self, case: Any, check: str) -> None:
        reason = getattr(case, "skip", {}).get(check)
        if reason:
            pytest.skip(f"{check}: {reason}")


def _bad_values(tp: Any) -> list[Any]:
    """Values the strict converter must reject for a field of type ``tp``."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if len(args) != 1:
            return []
        tp = args[0]
    if tp is float:
        return [True, "1e-3", float("nan"), float("inf")]
    if tp is int:
        return [1.5, True, "3"]
    if tp is bool:
        return ["true", 1]
    if tp is str:
        return [1]
    if typing.get_origin(tp) is typing.Literal:
        return ["__not_a_choice__"]
    return []


# ---------------------------------------------------------------- optimizers


class OptimizerConformance(_SpecChecks):
    """Inherited checks for optimizer plugins. Declare ``cases`` (:class:`OptimizerCase`)."""

    KIND: ClassVar[str] = "optimizer"
    BASE: ClassVar[type] = OptimizerSpec
    cases: ClassVar[Sequence[OptimizerCase]] = ()

    # -- building helpers

    def build(self, case: OptimizerCase, model: Any, **overrides: Any) -> torch.optim.Optimizer:
        spec = self.spec_of({**case.spec, **overrides})
        return spec.build(model)

    def _field_names(self, case: OptimizerCase) -> set[str]:
        spec = self.spec_of(case.spec)
        return {f.name for f in spec_fields(type(spec.group_option_spec()))}

    def _no_decay_overrides(self, case: OptimizerCase) -> dict[str, Any]:
        target = self.spec_of(case.spec).group_option_spec()
        out = {f.name: 0.0 for f in spec_fields(type(target)) if f.name.endswith("weight_decay")
               and isinstance(getattr(target, f.name), float)}
        return self._option_overrides(case, out) if out else {}

    def _option_overrides(self, case: OptimizerCase, options: dict[str, Any]) -> dict[str, Any]:
        """Overrides setting ``options`` on the spec whose fields groups use (a wrapper's ``inner``)."""
        spec = self.spec_of(case.spec)
        target = spec.group_option_spec()
        if target is spec:
            return dict(options)
        inner_field = next(f.name for f in spec_fields(type(spec)) if getattr(spec, f.name) is target)
        return {inner_field: {**spec_to_dict(target), **options}}

    # -- descent

    def _descent(self, case: OptimizerCase, problem: str) -> None:
        self._skip_if(case, f"descent_{problem}")
        torch.manual_seed(0)
        model = make_problem(problem)
        optimizer = self.build(case, model, **dict(case.descent.get(problem, {})))
        with torch.no_grad():
            initial = float(model.loss(0))
        losses = _train(optimizer, model, 0, case.descent_steps)
        with torch.no_grad():
            final = float(model.loss(0))
        assert math.isfinite(final), f"{problem}: loss became {final} (losses {losses[:5]}...)"
        assert final <= case.descent_ratio * initial, (
            f"{problem}: loss {initial:.4g} -> {final:.4g} after {case.descent_steps} steps, "
            f"expected <= {case.descent_ratio} x initial"
        )

    def test_descent_quadratic(self, case: OptimizerCase) -> None:
        self._descent(case, "quadratic")

    def test_descent_rosenbrock(self, case: OptimizerCase) -> None:
        self._descent(case, "rosenbrock")

    def test_descent_mlp(self, case: OptimizerCase) -> None:
        self._descent(case, "mlp")

    # -- resume

    def test_resume_equals_unbroken_run(self, case: OptimizerCase) -> None:
        self._skip_if(case, "resume")
        k = 4
        torch.manual_seed(0)
        model_a = make_problem("mlp")
        opt_a = self.build(case, model_a)
        torch.manual_seed(7)
        _train(opt_a, model_a, 0, 2 * k)

        torch.manual_seed(0)
        model_b = make_problem("mlp")
        opt_b = self.build(case, model_b)
        torch.manual_seed(7)
        _train(opt_b, model_b, 0, k)
        buffer = io.BytesIO()
        torch.save(
            {"model": model_b.state_dict(), "optimizer": opt_b.state_dict(), "rng": torch.get_rng_state()}, buffer
        )
        buffer.seek(0)

        model_c = make_problem("mlp", seed=1)
        with torch.no_grad():
            for p in model_c.parameters():
                p.add_(1.0)  # a resumed run must not depend on the fresh model's values
        opt_c = self.build(case, model_c)
        checkpoint = torch.load(buffer, weights_only=True)
        model_c.load_state_dict(checkpoint["model"])
        opt_c.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
        _train(opt_c, model_c, k, k)

        assert_state_equal(_params(model_a), _params(model_c), "params")
        assert_state_equal(opt_a.state_dict(), opt_c.state_dict(), "optimizer.state_dict()")

    # -- gradients that are None or zero

    def test_none_grads_change_nothing(self, case: OptimizerCase) -> None:
        self._skip_if(case, "none_grads")
        torch.manual_seed(0)
        model = TinyRegression()
        optimizer = self.build(case, model)
        untouched = ("fc1.weight", "fc1.bias")
        before = _params(model)
        for step in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(step)
            loss.backward()
            model.fc1.weight.grad = None
            model.fc1.bias.grad = None
            _grad_step(optimizer, loss)
        after = _params(model)
        for name in untouched:
            assert torch.equal(before[name], after[name]), f"{name} has grad None but was changed"
        assert not torch.equal(before["fc2.weight"], after["fc2.weight"]), "params with grads did not move"

    def test_zero_grads_change_nothing(self, case: OptimizerCase) -> None:
        self._skip_if(case, "zero_grads")
        torch.manual_seed(0)
        model = TinyRegression()
        optimizer = self.build(case, model, **self._no_decay_overrides(case))
        before = _params(model)
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
            _grad_step(optimizer, torch.tensor(1.0))
        assert_state_equal(before, _params(model), "params after zero-gradient steps (weight decay off)")

    # -- odd parameters

    def test_zero_size_and_frozen_params(self, case: OptimizerCase) -> None:
        self._skip_if(case, "zero_size_and_frozen")
        torch.manual_seed(0)
        weight = nn.Parameter(torch.randn(4, 4))
        empty = nn.Parameter(torch.zeros(0, 3))
        frozen = nn.Parameter(torch.randn(4), requires_grad=False)
        optimizer = self.build(case, [weight, empty, frozen])
        frozen_before = frozen.detach().clone()
        weight_before = weight.detach().clone()
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss = ((weight - 1) ** 2).sum() + (frozen * weight[0]).sum() + empty.sum()
            loss.backward()
            _grad_step(optimizer, loss)
        assert torch.equal(frozen, frozen_before), "a frozen parameter in a group was changed"
        assert empty.shape == (0, 3)
        assert torch.isfinite(weight).all(), "a 0-size parameter in the group broke the others"
        assert not torch.equal(weight, weight_before), "the trainable parameter did not move"

    def test_bf16_params_stay_bf16(self, case: OptimizerCase) -> None:
        self._skip_if(case, "bf16")
        torch.manual_seed(0)
        model = TinyRegression(dtype=torch.bfloat16)
        optimizer = self.build(case, model)
        before = _params(model)
        _train(optimizer, model, 0, 5)
        for name, p in model.named_parameters():
            assert p.dtype == torch.bfloat16, f"{name} became {p.dtype}"
            assert torch.isfinite(p.float()).all(), f"{name} is not finite"
        assert any(not torch.equal(before[n], p) for n, p in model.named_parameters()), "no bf16 param moved"

    # -- groups

    def test_group_overrides_honoured(self, case: OptimizerCase) -> None:
        self._skip_if(case, "group_overrides")
        names = self._field_names(case)
        if "lr" not in names:
            pytest.skip("the optimizer has no per-group `lr` to override")
        torch.manual_seed(0)
        model = TinyRegression()
        overrides: dict[str, Any] = {"group_overrides": [{"params": ["fc1.*"], "lr": 0.0}]}
        optimizer = self.build(case, model, **overrides)
        frozen_ids = {id(model.fc1.weight), id(model.fc1.bias)}
        for group in optimizer.param_groups:
            ids = {id(p) for p in group["params"]}
            if ids & frozen_ids:
                assert ids <= frozen_ids, "an override group holds parameters its globs do not match"
                assert float(group["lr"]) == 0.0, f"override lr not applied: {group['lr']}"
        seen = [id(p) for g in optimizer.param_groups for p in g["params"]]
        assert sorted(seen) == sorted(id(p) for p in model.parameters()), "a parameter is missing or in two groups"
        if "weight_decay" in names:
            decayed = self.build(case, model, **self._option_overrides(case, {"weight_decay": 0.1}))
            for group in decayed.param_groups:
                ids = {id(p) for p in group["params"]}
                if ids & {id(model.fc1.bias), id(model.norm.weight)}:
                    assert float(group["weight_decay"]) == 0.0, "biases and norms must get no weight decay by default"
        before = _params(model)
        _train(optimizer, model, 0, 3)
        after = _params(model)
        assert torch.equal(before["fc1.weight"], after["fc1.weight"]), "a group with lr = 0 moved"
        assert not torch.equal(before["fc2.weight"], after["fc2.weight"]), "the default group did not move"

    def test_closure_returns_loss(self, case: OptimizerCase) -> None:
        self._skip_if(case, "closure")
        torch.manual_seed(0)
        model = TinyRegression()
        optimizer = self.build(case, model)
        produced = []

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(0)
            loss.backward()
            produced.append(loss)
            return loss

        returned = optimizer.step(closure)
        assert produced, "step(closure) never called the closure"
        assert returned is not None and torch.equal(torch.as_tensor(returned), produced[-1].detach()), (
            "step(closure) must return the closure's loss"
        )

    # -- capabilities

    @_requires("foreach")
    def test_foreach_parity(self, case: OptimizerCase) -> None:
        results = []
        for foreach in (False, True):
            torch.manual_seed(0)
            model = make_problem("mlp")
            optimizer = self.build(case, model, foreach=foreach)
            _train(optimizer, model, 0, 10)
            results.append((_params(model), optimizer.state_dict()))
        (params_a, state_a), (params_b, state_b) = results
        assert_state_equal(params_a, params_b, "params", rtol=case.parity_rtol, atol=case.parity_atol)
        assert_state_equal(state_a["state"], state_b["state"], "state", rtol=case.parity_rtol, atol=case.parity_atol)

    @_requires("step_factor")
    def test_step_factor(self, case: OptimizerCase) -> None:
        assert_step_factor_contract(lambda model: self.build(case, model))


def _clone_state(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, Mapping):
        return {k: _clone_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_clone_state(v) for v in state]
    if isinstance(state, tuple):
        return tuple(_clone_state(v) for v in state)
    return state


# ---------------------------------------------------------------- schedulers


def _dummy_optimizer(lrs: Sequence[float | torch.Tensor]) -> torch.optim.Optimizer:
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=float(lrs[0]))


class SchedulerConformance(_SpecChecks):
    """Inherited checks for LR schedule plugins. Declare ``cases`` (:class:`SchedulerCase`)."""

    KIND: ClassVar[str] = "scheduler"
    BASE: ClassVar[type] = SchedulerSpec
    cases: ClassVar[Sequence[SchedulerCase]] = ()

    def build(self, case: SchedulerCase, optimizer: torch.optim.Optimizer) -> Any:
        return self.registry.build_scheduler(self.spec_of(case.spec), optimizer, t_max=case.t_max)

    def _advance(self, case: SchedulerCase, scheduler: Any) -> None:
        spec = scheduler.schedule
        if spec.units == "tokens":
            scheduler.step(tokens=case.step_tokens)
        else:
            scheduler.step()

    def _unit(self, case: SchedulerCase) -> int:
        return case.step_tokens if self.spec_of(case.spec).units == "tokens" else 1

    def test_expected_values(self, case: SchedulerCase) -> None:
        if not case.expected:
            pytest.skip("case declares no expected values")
        spec = self.spec_of(case.spec)
        t_max = spec.t_max if spec.t_max is not None else case.t_max
        for current, expected in sorted(case.expected.items()):
            got = spec.get_lr(case.initial_lr, current, t_max)
            assert math.isclose(got, expected, rel_tol=case.rel_tol, abs_tol=case.abs_tol), (
                f"get_lr at {current}: {got!r}, expected {expected!r}"
            )
        unit = self._unit(case)
        optimizer = _dummy_optimizer([case.initial_lr])
        scheduler = self.build(case, optimizer)
        last = max(case.expected)
        for k in range(last // unit + 1):
            current = k * unit
            if current in case.expected:
                got = optimizer.param_groups[0]["lr"]
                assert math.isclose(got, case.expected[current], rel_tol=case.rel_tol, abs_tol=case.abs_tol), (
                    f"after {k} scheduler steps the group LR is {got!r}, expected {case.expected[current]!r}"
                )
            optimizer.step()
            self._advance(case, scheduler)

    def test_lr_finite_and_nonnegative(self, case: SchedulerCase) -> None:
        spec = self.spec_of(case.spec)
        t_max = spec.t_max if spec.t_max is not None else case.t_max
        horizon = int((t_max or 100) * 1.25) + 1
        for current in range(0, horizon, max(1, horizon // 200)):
            lr = spec.get_lr(case.initial_lr, current, t_max)
            assert math.isfinite(lr) and lr >= 0, f"LR at {current} is {lr!r}"

    def test_resume_gives_same_lrs(self, case: SchedulerCase) -> None:
        spec = self.spec_of(case.spec)
        t_max = spec.t_max if spec.t_max is not None else case.t_max
        total = int((t_max or 40) * 1.1 / self._unit(case)) + 2
        cut = total // 2
        lrs = [case.initial_lr, case.initial_lr * 0.1]

        def run(optimizer, scheduler, steps):
            seen = []
            for _ in range(steps):
                seen.append([float(g["lr"]) for g in optimizer.param_groups])
                optimizer.step()
                self._advance(case, scheduler)
            return seen

        opt_a = _dummy_optimizer(lrs)
        unbroken = run(opt_a, self.build(case, opt_a), total)

        opt_b = _dummy_optimizer(lrs)
        sched_b = self.build(case, opt_b)
        first = run(opt_b, sched_b, cut)
        buffer = io.BytesIO()
        torch.save({"optimizer": opt_b.state_dict(), "scheduler": sched_b.state_dict()}, buffer)
        buffer.seek(0)
        checkpoint = torch.load(buffer, weights_only=True)
        opt_c = _dummy_optimizer(lrs)
        opt_c.load_state_dict(checkpoint["optimizer"])
        sched_c = self.build(case, opt_c)  # built after the optimizer was restored, as many loops do
        sched_c.load_state_dict(checkpoint["scheduler"])
        second = run(opt_c, sched_c, total - cut)
        assert first + second == unbroken, "resumed LR sequence differs from the unbroken run"
        assert [g["initial_lr"] for g in opt_c.param_groups] == lrs, "a checkpoint overwrote initial_lr"

    def test_tensor_lr_updated_in_place(self, case: SchedulerCase) -> None:
        lr_tensor = torch.tensor(case.initial_lr, dtype=torch.float64)
        optimizer = _dummy_optimizer([lr_tensor])
        scheduler = self.build(case, optimizer)
        reference = _dummy_optimizer([case.initial_lr])
        ref_scheduler = self.build(case, reference)
        for _ in range(8):
            assert optimizer.param_groups[0]["lr"] is lr_tensor, "the tensor LR was replaced (compiled steps recompile)"
            assert math.isclose(float(lr_tensor), reference.param_groups[0]["lr"], rel_tol=1e-12, abs_tol=1e-15)
            optimizer.step()
            reference.step()
            self._advance(case, scheduler)
            self._advance(case, ref_scheduler)

