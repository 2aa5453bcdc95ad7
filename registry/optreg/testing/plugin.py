"""pytest plugin of the conformance kit; opt in with ``pytest_plugins = ["optreg.testing.plugin"]``.

It parametrizes the inherited checks of :class:`~optreg.testing.OptimizerConformance`
and :class:`~optreg.testing.SchedulerConformance` over the class's ``cases`` and
``error_cases``, and provides the ``optreg_registry`` fixture (a fresh
:class:`optreg.Registry` that loads the installed plugins).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from optreg.registry import Registry
from optreg.testing.cases import inferred_capabilities, uncompiled_path


def pytest_configure(config: pytest.Config) -> None:
    """Run the kit's tiny problems on one thread (``OPTREG_TEST_THREADS`` overrides).

    With two OpenMP threads on a busy 2-core machine, 100 steps of the kit's MLP took 15x longer
    than on one thread: the problems are far too small for threads to pay.
    """
    import torch

    torch.set_num_threads(int(os.environ.get("OPTREG_TEST_THREADS", "1")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cls = metafunc.cls
    if cls is None:
        return
    if "case" in metafunc.fixturenames:
        raw = list(getattr(cls, "cases", ()))
        cases = [_with_capabilities(cls, c) for c in raw]
        required = getattr(metafunc.function, "optreg_requires", None)
        if required == "compile":
            cases = _compile_cases(cls, raw, cases)
        if required is not None:  # a capability check runs only for the cases that declare it
            cases = [c for c in cases if required in c.capabilities]
        if not cases and required is not None:
            _skip_all(metafunc, "case", f"no case of {cls.__name__} declares the `{required}` capability")
            return
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])
    if "error_case" in metafunc.fixturenames:
        error_cases = list(getattr(cls, "error_cases", ()))
        if not error_cases:
            _skip_all(metafunc, "error_case", f"{cls.__name__} declares no error_cases")
            return
        metafunc.parametrize("error_case", error_cases, ids=[c.name for c in error_cases])


def _compile_cases(cls: type, raw: list[Any], cases: list[Any]) -> list[Any]:
    """The cases the compiled-parity check runs: the first case of each optimizer type, and every case that names
    ``compile`` in its own capabilities (e.g. a bfloat16-state case, whose compiled kernel is another).

    Each case compiles its own graphs (its options are constants in them): about 2 s each under ``aot_eager``,
    so every case of every optimizer would add minutes to a suite for kernels the first case already traced.
    """
    seen: set[Any] = set()
    out = []
    for original, case in zip(raw, cases):
        kind = case.spec.get("type") if isinstance(case.spec, Mapping) else None
        explicit = "compile" in (getattr(original, "capabilities", None) or ())
        if explicit or kind not in seen:
            out.append(case)
        spec = _spec_of(cls, case)
        skipped = "compiled_parity" in (getattr(case, "skip", None) or {}) or (
            spec is not None and uncompiled_path(spec) is not None)  # the check skips these: the next case counts
        if "compile" in (case.capabilities or ()) and not skipped:
            seen.add(kind)
    return out


def _with_capabilities(cls: type, case: Any) -> Any:
    """``case`` with its capabilities resolved: the spec class's ``CAPABILITIES`` unless the case narrows them,
    plus those inferred from the spec's options (``"compile"``: :func:`optreg.testing.cases.inferred_capabilities`).

    A case naming a capability its spec does not declare is a mistake in the suite: it fails at collection.
    """
    if not hasattr(case, "capabilities"):
        return case
    spec = _spec_of(cls, case)
    declared = frozenset(spec.capabilities()) if spec is not None else frozenset()
    inferred = inferred_capabilities(spec) if spec is not None else frozenset()
    if case.capabilities is None:
        return attrs.evolve(case, capabilities=declared | inferred)
    extra = set(case.capabilities) - declared - inferred
    if spec is not None and extra:
        raise pytest.UsageError(
            f"{cls.__name__} case {case.name!r} declares capabilities {sorted(extra)} that its spec "
            f"({type(spec).__qualname__}.capabilities(): {sorted(declared)}) does not: declare them on the spec"
        )
    return attrs.evolve(case, capabilities=case.capabilities | inferred) if inferred - case.capabilities else case


def _spec_of(cls: type, case: Any) -> Any:
    """The case's spec object, or ``None`` when it does not build (the checks themselves report why)."""
    try:
        registry = cls().registry
        if registry.lookup(cls.KIND, str(case.spec.get("type", ""))) is None:
            return None
        return registry.structure(dict(case.spec), cls.BASE)
    except Exception:  # noqa: BLE001 - an unknown name or a bad spec is reported by the checks
        return None


def _skip_all(metafunc: pytest.Metafunc, argname: str, reason: str) -> None:
    """One skipped test with a readable reason instead of pytest's "got empty parameter set"."""
    metafunc.parametrize(argname, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["none"])


@pytest.fixture
def optreg_registry() -> Registry:
    """A fresh registry with the built-ins and every installed plugin."""
    return Registry()


def pytest_report_header(config: pytest.Config) -> list[str]:
    registry = Registry()
    ok = [p.name for p in registry.plugins if p.ok]
    lines = [f"optreg plugins: {', '.join(ok)}"]
    lines += [f"optreg plugin FAILED: {p.name} ({p.label}): {p.error}" for p in registry.failed_plugins]
    return lines
