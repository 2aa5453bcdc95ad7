"""The inherited checks of the conformance kit.

A plugin's suite subclasses :class:`OptimizerConformance` or
:class:`SchedulerConformance`, declares ``cases`` (and ``error_cases``), and
every ``test_*`` method below runs once per case. The parametrization comes from
the pytest plugin ``optreg.testing.plugin``, which the suite opts into with
``pytest_plugins = ["optreg.testing.plugin"]`` in its ``conftest.py``.
"""

from __future__ import annotations

import copy
import io
import math
import os
import pickle
import re
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from optreg.convert import field_types, spec_to_dict
from optreg.errors import SpecError
from optreg.groups import ParamNamesWarning
from optreg.loading import dump_spec
from optreg.optim import accelerator_path
from optreg.registry import Registry
from optreg.runspec import RunSpec
from optreg.specs import OptimizerSpec, SchedulerSpec, spec_fields
from optreg.testing.cases import ErrorCase, OptimizerCase, SchedulerCase, uncompiled_path
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
        self._check_provider(data.get("type"))
        return self.registry.structure(dict(data), self.BASE)

    def _check_provider(self, name: Any) -> None:
        """Stop when ``name`` resolves to another distribution's class (a name clash, or a missing plugin).

        Running the checks would test someone else's optimizer under this suite's name.
        """
        if not isinstance(name, str):
            return
        clash = self.registry.clashes(self.KIND).get(name)
        if clash:
            from optreg.registry import clash_message

            pytest.fail(f"{clash_message(self.KIND, name, clash)}: the kit will not guess which one to check "
                        "(use a qualified type in the case)", pytrace=False)
        if self.distribution is None:
            return
        cls = self.registry.lookup(self.KIND, name)
        if cls is None:
            return  # unknown names fail with the registry's own message (discovery, structuring)
        owner = self.registry.provider(self.KIND, name if ":" in name else cls.TYPE)
        if owner.distribution != self.distribution:
            pytest.fail(
                f"{self.KIND} {name!r} resolves to {cls.__module__}.{cls.__qualname__} of {owner.label}, "
                f"not to {self.distribution} (is {self.distribution} installed?), "
                "so the kit will not check someone else's class",
                pytrace=False,
            )

    # -- discovery

    def test_discovery(self, case: Any) -> None:
        registry = self.make_registry()
        name = case.spec["type"]
        cls = registry.lookup(self.KIND, name)
        failed = "; ".join(f"{p.name}: {p.error}" for p in registry.failed_plugins)
        assert cls is not None, f"{self.KIND} {name!r} is not registered in a fresh Registry (failed plugins: {failed})"
        if self.distribution is not None:
            owner = registry.provider(self.KIND, name if ":" in name else cls.TYPE)
            assert owner.distribution == self.distribution, (
                f"{name!r} is provided by {owner.distribution!r}, expected {self.distribution!r}"
            )

    # -- coverage

    def test_every_registered_name_has_a_case(self) -> None:
        """Every name ``distribution`` registers (of this kind) has a case in some suite class of that distribution."""
        if self.distribution is None:
            pytest.skip("the suite sets no `distribution`: nothing to compare the cases with")
        registered = {
            n for n in self.registry.names(self.KIND)
            if self.registry.provider(self.KIND, n).distribution == self.distribution
        }
        missing = registered - _covered_names(type(self), self.registry)
        if missing:
            _import_sibling_suites(type(self))
            missing = registered - _covered_names(type(self), self.registry)
        assert not missing, (
            f"{self.distribution} registers {self.KIND}s without a conformance case: {sorted(missing)}; "
            f"add an {'OptimizerCase' if self.KIND == 'optimizer' else 'SchedulerCase'} for each"
        )

    # -- round trip

    def test_round_trip(self, case: Any) -> None:
        spec = self.spec_of(case.spec)
        again = self.spec_of(spec_to_dict(spec))
        assert again == spec, "spec -> dict -> spec changed the spec"
        run = RunSpec(optimizer=spec) if self.KIND == "optimizer" else RunSpec(
            optimizer=self.registry.optimizer_spec({"type": "optreg:sgd"}), scheduler=spec
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

    # -- bounded sizes

    def test_huge_sizes_rejected(self, case: Any) -> None:
        """Every integer option set to 2**53 is refused with a SpecError at its path, never allocated or looped over.

        The spec must fail to parse (an upper bound, ``field(le=...)``), or building it and taking one step
        must raise a SpecError at the option's path (a check against the model) or the optimizer's own
        ``ValueError``. Seeds and fields declared ``unbounded=True`` size nothing and are exempt.
        """
        self._skip_if(case, "huge_sizes")
        cls = type(self.spec_of(case.spec))
        hints = field_types(cls)
        checked = 0
        for f in spec_fields(cls):
            huge = _huge_value(hints[f.name])
            if huge is None or size_exempt(f):
                continue
            checked += 1
            where = f"{cls.__name__}.{f.name} = 2**53"
            advice = (
                f"give {f.name} an upper bound a real run never needs (optreg.field(..., le=...); see "
                "optreg.specs.MAX_COUNT and MAX_STEPS) or check it against the model at build time with a "
                "SpecError; an integer that sizes nothing declares unbounded=True"
            )
            try:
                spec = self.spec_of({**case.spec, f.name: huge})
            except SpecError as exc:
                paths = [p for p, _ in exc.errors]
                assert any(_at_field(p, f.name) for p in paths), (
                    f"{where} was rejected at {paths}, expected $.{f.name}: {exc}"
                )
                continue
            problem = f"{where} parsed, built and stepped: nothing refuses a size of 2**53"
            try:
                seconds = float(os.environ.get("OPTREG_KIT_HANG_SECONDS", _HUGE_SECONDS))
                _within_seconds(seconds, self._run_with, case, spec)
            except SpecError as exc:
                paths = [p for p, _ in exc.errors]
                assert any(_at_field(p, f.name) for p in paths), (
                    f"{where} was rejected at build time at {paths}, expected $.{f.name}: {exc}"
                )
                continue
            except ValueError:
                continue  # the optimizer's own argument check: clear enough, and nothing was allocated
            except (Exception, _Timeout) as exc:  # noqa: BLE001 - any other outcome is the flaw reported
                problem = (f"{where} parsed, and building and stepping it raised {type(exc).__name__}: "
                           f"{str(exc)[:300]}")
            pytest.fail(f"{problem}; {advice}", pytrace=False)
        if not checked:
            pytest.skip("the spec has no integer fields that could size anything")

    def _run_with(self, case: Any, spec: Any) -> None:
        """Build ``spec`` and run it for one step (each kind says how)."""
        raise NotImplementedError

    def test_error_case(self, error_case: ErrorCase) -> None:
        with pytest.raises(SpecError) as info:
            self.spec_of(error_case.spec)
        paths = [p for p, _ in info.value.errors]
        assert error_case.path in paths, f"expected an error at {error_case.path}, got {info.value}"
        message = next(m for p, m in info.value.errors if p == error_case.path)
        assert re.search(error_case.match, message), f"{message!r} does not match {error_case.match!r}"

    # -- fuzzing

    def test_fuzz_specs(self, case: Any) -> None:
        """Specs generated from the case's fields and mutated TOML (:mod:`optreg.testing.fuzz`): parsing raises
        only SpecError, a spec that parses builds and steps or raises SpecError, dump/parse round-trips.
        ``OPTREG_FUZZ_EXAMPLES=500`` runs more examples."""
        pytest.importorskip("hypothesis", reason="the kit's fuzz check needs hypothesis (in optreg's test extra)")
        from optreg.testing.fuzz import fuzz_case

        fuzz_case(self, case)

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


#: The value the huge-sizes check gives every integer option: the first integer a float64 cannot step past.
HUGE = 2**53
#: How long building and stepping a spec with a huge option may take before the check calls it a hang
#: (``OPTREG_KIT_HANG_SECONDS`` sets it: the kit's own test of a seeded hang waits 2 s).
_HUGE_SECONDS = 20.0


def size_exempt(f: attrs.Attribute) -> bool:
    """Whether the huge-sizes check leaves integer field ``f`` alone: a seed (``seed``, ``*_seed``) or a field
    declared ``optreg.field(..., unbounded=True)`` (an ID or bit pattern that sizes nothing)."""
    return bool(f.metadata.get("unbounded")) or f.name == "seed" or f.name.endswith("_seed")


def _huge_value(tp: Any) -> Any:
    """2**53 in the shape of an integer field (``(2**53,)`` for a tuple of ints), or None for other fields."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            return None
        tp, origin = args[0], typing.get_origin(args[0])
    if tp is int:
        return HUGE
    if origin is tuple and typing.get_args(tp) in ((int, Ellipsis), (int,)):
        return (HUGE,)
    return None


def _at_field(path: str, name: str) -> bool:
    return path == f"$.{name}" or path.startswith((f"$.{name}[", f"$.{name}."))


class _Timeout(BaseException):
    """Raised in the main thread when a guarded call runs too long (a BaseException so no ``except Exception``
    inside the optimizer swallows it)."""


def _within_seconds(seconds: float, func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func``, raising :class:`_Timeout` after ``seconds`` where SIGALRM exists in the main thread
    (a Python-level loop is interrupted; elsewhere the call simply runs)."""
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return func(*args)

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return func(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _normalized(value: Any) -> Any:
    """Defaults compared as values: tuples and lists alike, ints and floats alike."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalized(v) for v in value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def _covered_names(suite: type, registry: Registry) -> set[str]:
    """Canonical names with a case in any loaded suite class of ``suite``'s kind and distribution."""
    base = OptimizerConformance if issubclass(suite, OptimizerConformance) else SchedulerConformance
    names = set()
    for cls in _all_subclasses(base):
        if getattr(cls, "distribution", None) != suite.distribution:
            continue
        for case in getattr(cls, "cases", ()):
            found = registry.lookup(base.KIND, str(case.spec.get("type", "")))
            if found is not None:
                names.add(found.TYPE)
    return names


def _import_sibling_suites(suite: type) -> None:
    """Import the ``test_*.py`` modules beside ``suite``'s (a run of one file has not loaded them)."""
    import importlib.util
    import sys
    from pathlib import Path

    module = sys.modules.get(suite.__module__)
    where = getattr(module, "__file__", None)
    if not where:
        return
    loaded = {Path(m.__file__).resolve() for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    for path in sorted(Path(where).parent.glob("test_*.py")):
        if path.resolve() in loaded:
            continue
        spec = importlib.util.spec_from_file_location(f"_optreg_kit_sibling_{path.stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # keeps its suite classes alive (__subclasses__ holds them weakly)
        try:
            spec.loader.exec_module(module)
        except Exception:  # noqa: BLE001 - a module that fails to import is reported by pytest itself
            sys.modules.pop(spec.name, None)
            continue


# ---------------------------------------------------------------- optimizers


class OptimizerConformance(_SpecChecks):
    """Inherited checks for optimizer plugins. Declare ``cases`` (:class:`OptimizerCase`)."""

    KIND: ClassVar[str] = "optimizer"
    BASE: ClassVar[type] = OptimizerSpec
    cases: ClassVar[Sequence[OptimizerCase]] = ()

    # -- building helpers

    def build(self, case: OptimizerCase, model: Any, **overrides: Any) -> torch.optim.Optimizer:
        spec = self.spec_of({**case.spec, **overrides})
        with warnings.catch_warnings():  # the checks step plain tensors on purpose: no embedding to miss
            warnings.simplefilter("ignore", ParamNamesWarning)
            return spec.build(model)

    def _run_with(self, case: OptimizerCase, spec: Any) -> None:
        torch.manual_seed(0)
        model = make_problem("quadratic")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ParamNamesWarning)
            optimizer = spec.build(model)
        _train(optimizer, model, 0, 1)

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

    def test_resume_through_fqn_state_dicts(self, case: OptimizerCase) -> None:
        """Resuming through torch.distributed.checkpoint's FQN-keyed state dicts (what distributed runs save,
        and what lets N ranks' checkpoint load on M) equals the unbroken run exactly (one process here)."""
        from optreg.parallel import load_state_dicts, state_dicts

        self._skip_if(case, "resume")
        k = 3
        torch.manual_seed(0)
        model_a = make_problem("mlp")
        opt_a = self.build(case, model_a)
        _train(opt_a, model_a, 0, 2 * k)
        torch.manual_seed(0)
        model_b = make_problem("mlp")
        opt_b = self.build(case, model_b)
        _train(opt_b, model_b, 0, k)
        model_state, optimizer_state = state_dicts(model_b, opt_b, full=True)
        buffer = io.BytesIO()
        torch.save({"model": model_state, "optimizer": optimizer_state}, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        model_c = make_problem("mlp", seed=1)
        opt_c = self.build(case, model_c)
        load_state_dicts(model_c, opt_c, saved["model"], saved["optimizer"], full=True)
        _train(opt_c, model_c, k, k)
        assert_state_equal(_params(model_a), _params(model_c), "params")

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

    # -- one source of defaults

    def test_spec_defaults_agree_with_the_optimizer(self, case: OptimizerCase) -> None:
        """A spec field and the optimizer constructor's argument of the same name have the same default.

        A user of the Python class and a user of a TOML file must get the same optimizer for the same
        (omitted) options; a default declared twice drifts.
        """
        import inspect

        self._skip_if(case, "defaults")
        spec = self.spec_of(case.spec)
        optimizer = self.build(case, TinyRegression())
        parameters = inspect.signature(type(optimizer).__init__).parameters
        compared, differ = 0, []
        for f in spec_fields(type(spec)):
            if not f.metadata.get("kwarg", True) or f.default is attrs.NOTHING or f.name not in parameters:
                continue
            arg = parameters[f.name].default
            if arg is inspect.Parameter.empty:
                continue
            default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[arg-type]
            compared += 1
            if _normalized(default) != _normalized(arg):
                differ.append(f"{f.name}: spec {default!r}, {type(optimizer).__name__}.__init__ {arg!r}")
        assert not differ, "defaults declared twice disagree: " + "; ".join(differ)
        if not compared:
            pytest.skip(f"{type(optimizer).__name__}.__init__ shares no defaulted argument with the spec")

    # -- copies

    def test_deepcopy_and_pickle_continue(self, case: OptimizerCase) -> None:
        """``copy.deepcopy`` and a pickle round trip of (model, optimizer) continue exactly as the original.

        torch pickles only ``defaults``, ``state`` and ``param_groups``: an attribute set in
        ``__init__`` (or a hook registered there) is gone in the copy.
        """
        self._skip_if(case, "copy")
        k = 3
        torch.manual_seed(0)
        model = make_problem("mlp")
        optimizer = self.build(case, model)
        _train(optimizer, model, 0, k)
        copies = {
            "copy.deepcopy": copy.deepcopy((model, optimizer)),
            "pickle": pickle.loads(pickle.dumps((model, optimizer))),
        }
        torch.manual_seed(7)
        _train(optimizer, model, k, k)
        for how, (model_copy, optimizer_copy) in copies.items():
            torch.manual_seed(7)
            try:
                _train(optimizer_copy, model_copy, k, k)
            except Exception as exc:
                raise AssertionError(f"stepping the {how} of a stepped optimizer failed: {exc!r}") from exc
            assert_state_equal(_params(model), _params(model_copy), f"params ({how} vs original)")
            assert_state_equal(optimizer.state_dict(), optimizer_copy.state_dict(), f"state ({how} vs original)")

    # -- dtypes

    def test_float64_step_stays_float64(self, case: OptimizerCase) -> None:
        """With float64 params no op of a step produces a float32 / bf16 / fp16 value (counters aside).

        Every op of the step is recorded under a ``TorchDispatchMode``; a low-precision output that is
        not an integer-valued counter or 0/1 gate (exact in float32) fails with the op's name: e.g. a
        coefficient built as ``torch.where(cond, beta, 1.0)`` from Python floats is float32 (0.9 becomes
        0.89999998). State in a lower precision is for a user who asks (``skip`` the check then).
        """
        self._skip_if(case, "float64")
        torch.manual_seed(0)
        model = TinyRegression(dtype=torch.float64)
        optimizer = self.build(case, model)
        for step in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(step)
            loss.backward()
            with _LowPrecisionRecorder() as recorder:
                _grad_step(optimizer, loss)
            assert not recorder.found, (
                f"step {step} on float64 params rounded to a lower precision: " + "; ".join(recorder.found[:8])
            )
        for name, p in model.named_parameters():
            assert p.dtype == torch.float64, f"{name} became {p.dtype}"
        _assert_state_float64(optimizer.state_dict()["state"])

    def test_complex_params(self, case: OptimizerCase) -> None:
        """Complex params are stepped as their ``view_as_real`` (optax's split_real_and_imaginary), or refused.

        A refusal is an error at construction (``TypeError`` / ``ValueError``) that says "complex";
        anything else must equal the same optimizer on the real view, within the parity tolerance.
        """
        self._skip_if(case, "complex")
        g = torch.Generator().manual_seed(0)
        start = torch.randn(4, 3, 2, generator=g)
        target = torch.randn(4, 3, 2, generator=g)
        weight = torch.logspace(-1, 1, 12).reshape(4, 3, 1)
        z = nn.Parameter(torch.view_as_complex(start.clone()))
        try:
            opt_complex = self.build(case, [z])
        except (TypeError, ValueError) as exc:
            assert "complex" in str(exc).lower(), f"building on a complex param failed without saying why: {exc}"
            return
        x = nn.Parameter(start.clone())
        opt_real = self.build(case, [x])

        def closure_of(opt: torch.optim.Optimizer, view: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = (((view() - target) ** 2) * weight).sum()
                loss.backward()
                return loss

            return closure

        for step in range(5):
            try:
                opt_complex.step(closure_of(opt_complex, lambda: torch.view_as_real(z)))
            except Exception as exc:
                raise AssertionError(
                    f"step {step} on a complex param failed (support complex or refuse it at construction "
                    f"with an error that says so): {exc!r}"
                ) from exc
            opt_real.step(closure_of(opt_real, lambda: x))
        assert z.dtype == torch.complex64, f"the complex param became {z.dtype}"
        torch.testing.assert_close(
            torch.view_as_real(z.detach()), x.detach(), rtol=case.parity_rtol, atol=case.parity_atol,
            msg=lambda m: f"complex params differ from the same optimizer on view_as_real: {m}",
        )

    def test_a_non_finite_gradient_is_never_silently_frozen(self, case: OptimizerCase) -> None:
        """After a NaN in one coordinate's gradient, the NaN shows (some param is non-finite) or that
        coordinate keeps training: never a finite param that silently stops moving (``sign(NaN)`` is 0)."""
        self._skip_if(case, "non_finite")
        torch.manual_seed(0)
        model = TinyRegression()
        optimizer = self.build(case, model)
        _train(optimizer, model, 0, 2)
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(2)
        loss.backward()
        model.fc2.weight.grad[0, 0] = float("nan")
        _grad_step(optimizer, loss)
        after_nan = model.fc2.weight.detach()[0, 0].clone()
        _train(optimizer, model, 3, 3)
        params = _params(model)
        visible = not all(torch.isfinite(p).all() for p in params.values())
        moved = not torch.equal(params["fc2.weight"][0, 0], after_nan)
        assert visible or moved, (
            "a NaN gradient silently froze fc2.weight[0, 0]: every param is finite but that coordinate no longer "
            "moves (let the NaN reach the param, as torch.optim does, or skip the step)"
        )

    # -- groups added later, hooks, maximize

    @pytest.mark.parametrize("named", [False, True], ids=["tensors", "named"])
    def test_add_param_group_then_step(self, case: OptimizerCase, named: bool) -> None:
        """``add_param_group`` with a matrix and a bias (as torch users add a layer) steps them, or is refused.

        Built from plain tensors the group is added as plain tensors; built from ``(name, tensor)``
        pairs (as from a module) it is added as pairs, torch's rule for named groups. A refusal is a
        ``TypeError`` / ``ValueError`` whose message names ``add_param_group``.
        """
        self._skip_if(case, "add_param_group")
        torch.manual_seed(0)
        model = TinyRegression()
        first = [(n, p) for n, p in model.named_parameters() if not n.startswith("fc2.")]
        added = [(n, p) for n, p in model.named_parameters() if n.startswith("fc2.")]
        if not named:
            first, added = [p for _, p in first], [p for _, p in added]
        optimizer = self.build(case, first)
        try:
            optimizer.add_param_group({"params": list(added)})
        except (TypeError, ValueError) as exc:
            assert "add_param_group" in str(exc), f"add_param_group was refused without saying so: {exc}"
            return
        seen = [id(p) for group in optimizer.param_groups for p in group["params"]]
        assert sorted(seen) == sorted(id(p) for p in model.parameters()), "a parameter is missing or in two groups"
        before = _params(model)
        try:
            _train(optimizer, model, 0, 3)
        except Exception as exc:
            raise AssertionError(f"a step after add_param_group failed: {exc!r}") from exc
        after = _params(model)
        for name in ("fc2.weight", "fc2.bias"):
            assert torch.isfinite(after[name]).all(), f"{name} (added group) is not finite"
            assert not torch.equal(before[name], after[name]), f"{name} (added group) did not move"
        fresh = self.build(case, first)
        fresh.add_param_group({"params": list(added)})
        fresh.load_state_dict(optimizer.state_dict())
        assert_state_equal(optimizer.state_dict(), fresh.state_dict(), "state after load_state_dict (added group)")

    def test_state_dict_hooks_fire(self, case: OptimizerCase) -> None:
        """torch's step and state-dict hooks run (and their returned values are used), as for torch.optim."""
        self._skip_if(case, "state_dict_hooks")
        torch.manual_seed(0)
        model = TinyRegression()
        optimizer = self.build(case, model)
        fired: list[str] = []
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: fired.append("step_pre"))
        optimizer.register_step_post_hook(lambda opt, args, kwargs: fired.append("step_post"))
        _train(optimizer, model, 0, 1)
        assert fired == ["step_pre", "step_post"], f"step hooks: {fired}"

        fired.clear()
        optimizer.register_state_dict_pre_hook(lambda opt: fired.append("state_dict_pre"))

        def mark(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
            fired.append("state_dict_post")
            return {**state_dict, "optreg_kit_mark": 1}

        optimizer.register_state_dict_post_hook(mark)
        saved = optimizer.state_dict()
        assert fired == ["state_dict_pre", "state_dict_post"], f"state_dict hooks: {fired}"
        assert saved.get("optreg_kit_mark") == 1, "the state_dict post-hook's returned dict was not used"

        fired.clear()
        other = self.build(case, make_problem("mlp"))

        def unmark(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
            fired.append("load_pre")
            return {k: v for k, v in state_dict.items() if k != "optreg_kit_mark"}

        other.register_load_state_dict_pre_hook(unmark)
        other.register_load_state_dict_post_hook(lambda opt: fired.append("load_post"))
        other.load_state_dict(saved)
        assert fired == ["load_pre", "load_post"], f"load_state_dict hooks: {fired}"

    def test_maximize_equals_minimizing_the_negated_loss(self, case: OptimizerCase) -> None:
        """``maximize = true`` on ``-f`` gives exactly the params of ``maximize = false`` on ``f``."""
        self._skip_if(case, "maximize")
        if "maximize" not in self._field_names(case):
            pytest.skip("the optimizer has no `maximize` option")
        results = []
        for maximize, sign in ((False, 1.0), (True, -1.0)):
            torch.manual_seed(0)
            model = make_problem("mlp")
            optimizer = self.build(case, model, **self._option_overrides(case, {"maximize": maximize}))
            for step in range(5):

                def closure(
                    step: int = step, model: Any = model, optimizer: Any = optimizer, sign: float = sign
                ) -> torch.Tensor:
                    optimizer.zero_grad(set_to_none=True)
                    loss = sign * model.loss(step)
                    loss.backward()
                    return loss

                optimizer.step(closure)
            results.append(_params(model))
        assert_state_equal(results[0], results[1], "params (maximize -f vs minimize f)")

    # -- memory

    def test_state_estimate_matches_a_step(self, case: OptimizerCase) -> None:
        """The state the spec's declared layout estimates from shapes (``optreg.memory.estimate_state``) equals,
        within 1%, the bytes of state tensors the optimizer holds after one step, on every kit model (and
        the MLP in bfloat16 and float64, where the case runs those). A layout marked ``grows`` (a history)
        is an upper bound: the measured state lies between the first-step and the full estimate."""
        from optreg.memory import estimate_state, measured_state_bytes

        self._skip_if(case, "state_estimate")
        spec = self.spec_of(case.spec)
        models: list[tuple[str, Callable[[], nn.Module]]] = [
            (name, lambda name=name: make_problem(name)) for name in ("quadratic", "rosenbrock", "mlp")
        ]
        if "bf16" not in case.skip:
            models.append(("mlp bfloat16", lambda: TinyRegression(dtype=torch.bfloat16)))
        if "float64" not in case.skip:
            models.append(("mlp float64", lambda: TinyRegression(dtype=torch.float64)))
        for label, make in models:
            torch.manual_seed(0)
            model = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ParamNamesWarning)
                estimate = estimate_state(spec, model)
                optimizer = spec.build(model)
            assert estimate.complete, f"{', '.join(estimate.undeclared)} declares no state layout: " \
                "override param_state_layout() in its spec (see docs/writing-plugins.md)"
            _train(optimizer, model, 0, 1)
            measured = measured_state_bytes(optimizer)
            low, high = estimate.first_step_bytes, estimate.total_bytes
            assert 0.99 * low <= measured <= 1.01 * high or measured == low == 0, (
                f"{label}: the declared state layout gives {low}"
                + (f"..{high}" if high != low else "")
                + f" bytes, the optimizer holds {measured} after a step.\n  declared: "
                + _declared_summary(estimate)
                + "\n  held: " + _held_summary(optimizer)
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

    @_requires("compile")
    def test_compiled_parity(self, case: OptimizerCase) -> None:
        """``compile = true`` steps as ``compile = false`` does: params, state and param groups after 10 steps of the
        kit's MLP, within ``compile_rtol`` / ``compile_atol``, and every kernel call of the compiled run compiled.

        Compiled with the ``aot_eager`` backend (``inductor`` with ``OPTREG_COMPILE_TESTS=1``): dynamo traces the
        step as inductor would get it, every branch taken under ``torch.compiler.is_compiling()`` (``ema_``'s
        formula, an iota instead of an index tensor), in seconds instead of 10-40 s per kernel. Inside the check
        every tensor size compiles (``optreg.compiling.compile_all_sizes``: size thresholds would leave the tiny
        MLP eager), and a kernel that falls back to eager fails it: otherwise eager would be compared with eager.
        """
        self._skip_if(case, "compiled_parity")
        target = self.spec_of(case.spec).group_option_spec()
        chosen = uncompiled_path(target)
        if chosen:
            pytest.skip(f"compiled_parity: the case chooses the {chosen} path, which compile = true does not take")
        # An unset `fused` picks a fused kernel where one applies, and compile applies to the other paths (torch's
        # convention, e.g. adamw): both runs set fused = false so that compile decides.
        paths = {"fused": False} if "fused" in self._field_names(case) and target.fused is None else {}
        from torch._dynamo.utils import counters

        from optreg import compiling

        backend = "inductor" if os.environ.get("OPTREG_COMPILE_TESTS") == "1" else "aot_eager"
        results = []
        for compiled_run in (False, True):
            torch.manual_seed(0)
            model = make_problem("mlp")
            optimizer = self.build(case, model, **self._option_overrides(case, {"compile": compiled_run, **paths}))
            ran_before, fell_back_before = compiling._RAN.copy(), compiling._FELL_BACK.copy()
            eager_only, warned = set(compiling._EAGER_ONLY), set(compiling._WARNED_LIMIT)
            captured = counters["stats"]["calls_captured"]
            try:
                with compiling.compile_backend(backend), compiling.compile_all_sizes(), warnings.catch_warnings():
                    warnings.filterwarnings("error", r"optreg: (torch\.compile could not compile|the compiled )",
                                            RuntimeWarning)
                    _train(optimizer, model, 0, 10)
            finally:  # a kernel that fell back stays eager for the process: forget it, the next case tries again
                compiling._EAGER_ONLY.intersection_update(eager_only)
                compiling._WARNED_LIMIT.intersection_update(warned)
            ran, fell_back = compiling._RAN - ran_before, compiling._FELL_BACK - fell_back_before
            names = sorted({f"{fn.__name__} ({n} calls)" for (fn, _), n in (ran + fell_back).items()})
            if not compiled_run:
                assert not ran and not fell_back, f"compile = false ran the compiled path: {names}"
            else:
                assert not fell_back, (
                    f"with compile = true these kernels ran eagerly instead ({backend} could not compile them, "
                    f"or past the recompile limit): {sorted(fn.__name__ for fn, _ in fell_back)}"
                )
                assert ran, (
                    "compile = true ran no kernel through optreg.compiling on the kit's MLP: the step did not take "
                    "its compiled path, or compiles on its own (compile through optreg.compiling's compiled / "
                    "run_compiled / call_compiled, and size thresholds through compile_min_numel)"
                )
                # A kernel compiled for the first time here must have been traced now (dynamo really compiled it).
                new = sorted(fn.__name__ for fn, b in ran if not ran_before[fn, b])
                assert not new or counters["stats"]["calls_captured"] > captured, (
                    f"dynamo captured no frame while {new} ran compiled for the first time"
                )
            results.append((_params(model), _without_key(optimizer.state_dict(), "compile")))
        (params_a, state_a), (params_b, state_b) = results
        # Not bit for bit: a compiled kernel computes the eager formulas fused or in another order (FMA, a
        # reduction's order; ema_ is torch.lerp eagerly, x + w * (y - x) compiled), a few ulps apart per step.
        rtol, atol = case.compile_rtol, case.compile_atol
        assert_state_equal(params_a, params_b, "params (eager vs compiled)", rtol=rtol, atol=atol)
        assert_state_equal(state_a, state_b, "state_dict (eager vs compiled)", rtol=rtol, atol=atol)

    @_requires("step_factor")
    def test_step_factor(self, case: OptimizerCase) -> None:
        assert_step_factor_contract(lambda model: self.build(case, model))

    @_requires("step_factor")
    def test_step_factor_step_needs_no_host_sync(self, case: OptimizerCase) -> None:
        """A ``step_factor`` step never reads a tensor value on the host (checked on CPU by recording the ops).

        ``.item()``, ``float(t)``, ``bool(t)``, ``if t:``, ``torch.equal`` and data-dependent shapes
        (``nonzero``, ``masked_select``) each wait for the device on an accelerator.
        """
        torch.manual_seed(0)
        model = make_problem("mlp")
        optimizer = self.build(case, model)
        for step, factor in enumerate((1.0, 1.0, 0.0, 1.0)):
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(step)
            loss.backward()
            with accelerator_path(), _HostSyncRecorder() as recorder:  # the path an accelerator takes
                _grad_step(optimizer, loss, step_factor=torch.tensor(factor))
            assert not recorder.found, (
                f"step {step} (step_factor={factor:g}) read tensor values on the host: {sorted(set(recorder.found))}"
            )


def _declared_summary(estimate: Any) -> str:
    """The first parameter's declared state tensors and every shared one: what a layout author compares."""
    first = next((e.param for e in estimate.entries if e.param is not None), None)
    rows = [e for e in estimate.entries if e.param in (first, None)]
    return ", ".join(
        f"{e.param or e.group}.{e.tensor.name} {list(e.tensor.shape)} {str(e.tensor.dtype).removeprefix('torch.')}"
        + (f" x{e.tensor.count}" if e.tensor.count != 1 else "")
        for e in rows
    ) or "nothing"


def _held_summary(optimizer: torch.optim.Optimizer) -> str:
    """The state tensors of the first parameter of each state dict and any tensors outside per-parameter state."""
    from optreg.memory import local_shard

    held: list[str] = []

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, torch.Tensor):
            local = local_shard(obj)
            held.append(f"{path} {list(local.shape)} {str(local.dtype).removeprefix('torch.')}")
        elif isinstance(obj, Mapping):
            keys = list(obj)
            if path.endswith(".state") and keys and all(isinstance(k, int) for k in keys):
                keys = keys[:1]  # per-parameter state: the first parameter's shows the layout
            for key in keys:
                walk(obj[key], f"{path}.{key}")
        elif isinstance(obj, (list, tuple)):
            for i, value in enumerate(obj):
                walk(value, f"{path}[{i}]")

    walk(optimizer.state_dict(), "state_dict")
    return ", ".join(held) or "nothing"


def _without_key(value: Any, key: str) -> Any:
    """``value`` (a state dict) without entries named ``key`` in any mapping it holds."""
    if isinstance(value, Mapping):
        return {k: _without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without_key(v, key) for v in value]
    if isinstance(value, tuple):
        return tuple(_without_key(v, key) for v in value)
    return value


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


_LOW_PRECISION = (torch.float32, torch.bfloat16, torch.float16)
#: Integers up to this magnitude are exact in float32 (and step counters live there, as in torch).
_EXACT_INT = 2.0**24
#: torch functions that read a tensor's value on the host (a device sync on an accelerator). Recorded at
#: the torch-function level, i.e. what the optimizer's code asks for: a CPU kernel may read a 0-dim
#: tensor argument internally (``_foreach_add_(xs, t)``), which its CUDA kernel does on the device.
_HOST_SYNC_FUNCTIONS = frozenset(
    {"item", "__bool__", "__float__", "__int__", "__index__", "__complex__", "__format__", "tolist", "numpy",
     "__array__", "equal", "allclose", "is_nonzero", "nonzero", "argwhere", "masked_select", "unique",
     "unique_consecutive", "bincount"}
)


def _tensor_leaves(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensor_leaves(item)]
    return []


class _LowPrecisionRecorder(TorchDispatchMode):
    """Records ops whose output (or in-place result) is float32 / bf16 / fp16 and not integer-valued."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        results = _tensor_leaves(out)
        if func._schema.name.endswith("_") and args:  # in-place (foreach ops return nothing)
            results += _tensor_leaves(args[0])
        for t in results:
            if t.dtype in _LOW_PRECISION and t.numel() and not _integer_valued(t):
                sample = t.reshape(-1)[0].item()
                self.found.append(f"{func} -> {t.dtype}{list(t.shape)} (e.g. {sample!r}) at {_caller()}")
                break
        return out


def _caller() -> str:
    """The innermost frame outside torch and this module: where the recorded op was called."""
    import traceback

    here = __file__
    torch_dir = torch.__file__.rsplit("/", 1)[0]
    for frame in reversed(traceback.extract_stack()):
        if frame.filename != here and not frame.filename.startswith(torch_dir):
            return f"{frame.filename.rsplit('/', 2)[-2:][0]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return "?"


def _integer_valued(t: torch.Tensor) -> bool:
    d = t.detach().double()
    return bool(((d == d.round()) & (d.abs() <= _EXACT_INT)).all())


class _HostSyncRecorder(TorchFunctionMode):
    """Records calls that read tensor values on the host (see ``_HOST_SYNC_FUNCTIONS``)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _HOST_SYNC_FUNCTIONS:
            self.found.append(f"{name} at {_caller()}")
        return func(*args, **(kwargs or {}))


def _assert_state_float64(state: Any, path: str = "state") -> None:
    """Floating state of float64 params is float64, but for integer-valued counters."""
    if isinstance(state, torch.Tensor):
        if state.dtype in _LOW_PRECISION and state.numel() and not _integer_valued(state):
            raise AssertionError(f"{path} is {state.dtype} under float64 params")
        return
    if isinstance(state, Mapping):
        for key, value in state.items():
            _assert_state_float64(value, f"{path}[{key!r}]")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            _assert_state_float64(value, f"{path}[{i}]")


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

    def _run_with(self, case: SchedulerCase, spec: Any) -> None:
        optimizer = _dummy_optimizer([case.initial_lr])
        scheduler = self.registry.build_scheduler(spec, optimizer, t_max=case.t_max)
        optimizer.step()
        if spec.units == "tokens":
            scheduler.step(tokens=case.step_tokens)
        else:
            scheduler.step()

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

    def test_negative_current_rejected_or_clamped(self, case: SchedulerCase) -> None:
        """``get_lr`` before the start (``current < 0``) raises ``ValueError`` or gives the LR at 0, never less."""
        spec = self.spec_of(case.spec)
        t_max = spec.t_max if spec.t_max is not None else case.t_max
        try:
            lr = spec.get_lr(case.initial_lr, -1, t_max)
        except ValueError:
            return
        at_start = spec.get_lr(case.initial_lr, 0, t_max)
        assert lr == at_start, f"get_lr at -1 is {lr!r}; expected a ValueError or the LR at 0 ({at_start!r})"

    def test_own_t_max_wins(self, case: SchedulerCase) -> None:
        """A spec's own ``t_max`` is what ``spec.get_lr`` uses, whatever the run passes (as its scheduler does)."""
        spec = self.spec_of(case.spec)
        if spec.t_max is None:
            pytest.skip("the case's spec sets no t_max")
        horizon = int(spec.t_max * 1.25) + 1
        for current in range(0, horizon, max(1, horizon // 50)):
            own = spec.get_lr(case.initial_lr, current, spec.t_max)
            for passed in (None, spec.t_max * 2 + 7):
                got = spec.get_lr(case.initial_lr, current, passed)
                assert got == own, f"get_lr at {current} with t_max={passed}: {got!r}, with the spec's own: {own!r}"

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

