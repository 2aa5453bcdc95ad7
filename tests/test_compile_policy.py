"""Fast by default, eager where it does not pay: every registered optimizer with a ``compile`` option defaults
to ``"auto"``, and built as a user gets it on the conformance kit's small problems it never runs torch.compile
(a compile there costs seconds and saves microseconds); the same optimizer with ``compile = true`` does."""

from __future__ import annotations

import warnings

import attrs
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import optreg
from optreg.compiling import compile_available
from optreg.testing.problems import make_problem

REGISTRY = optreg.get_registry()
WITH_COMPILE = sorted(
    name for name in REGISTRY.names("optimizer")
    if "compile" in attrs.fields_dict(REGISTRY.spec_class("optimizer", name))
)


def _steps(spec: dict, problem: str) -> None:
    model = make_problem(problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optreg.ParamNamesWarning)
        optimizer = optreg.build_optimizer(spec, model)
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        model.loss(step).backward()
        optimizer.step()


def test_the_families_with_a_compiled_path_default_to_auto() -> None:
    assert {"adamw", "lion", "signum", "schedule_free_adamw"} <= set(WITH_COMPILE)
    for name in WITH_COMPILE:
        assert REGISTRY.spec_class("optimizer", name)().compile == "auto", name


@pytest.mark.parametrize("name", WITH_COMPILE)
def test_the_default_stays_eager_on_the_kits_problems(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTREG_AUTO_COMPILE_NUMEL", raising=False)
    torch._dynamo.reset()
    counters.clear()
    for problem in ("quadratic", "mlp"):
        _steps({"type": name}, problem)
    assert counters["frames"]["total"] == 0, f"{name} compiled a frame on a tiny problem: {dict(counters['frames'])}"


@pytest.mark.skipif(not compile_available(), reason="no C++ compiler for torch.compile here")
def test_auto_above_the_threshold_takes_the_compiled_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same policy takes the compiled path once the parameters are large enough (the threshold lowered to
    64 Ki elements here; the compiled kernel is replaced by a recorder, so nothing compiles for seconds)."""
    import optreg_sign.functional as F

    calls = []
    monkeypatch.setattr(F, "_compiled", lambda name: lambda *args: calls.append(name))
    monkeypatch.setenv("OPTREG_AUTO_COMPILE_NUMEL", str(2**16))
    for size, expected in ((128, []), (256, ["lion"])):  # 16 Ki elements stay eager, 64 Ki compile
        calls.clear()
        p = torch.nn.Parameter(torch.randn(size, size))
        optimizer = optreg.build_optimizer({"type": "lion", "lr": 1e-3}, [p])
        p.grad = torch.randn_like(p)
        optimizer.step()
        assert calls == expected, size
