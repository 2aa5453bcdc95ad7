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


#: What a name needs besides its type to be built (a wrapper's inner optimizer).
EXTRA = {"mechanic": {"inner": {"type": "sgd", "lr": 1.0}}}


def _steps(spec: dict, problem: str) -> None:
    model = make_problem(problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optreg.ParamNamesWarning)
        optimizer = optreg.build_optimizer({**EXTRA.get(spec["type"], {}), **spec}, model)
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(step)
        loss.backward()
        optreg.optim.give_loss(optimizer, loss.detach())  # MoMo's step needs the loss
        optimizer.step()


def test_the_families_with_a_compiled_path_default_to_auto() -> None:
    assert {"adamw", "lion", "signum", "schedule_free_adamw", "momo", "momo_adam", "mechanic"} <= set(WITH_COMPILE)
    for name in WITH_COMPILE:
        assert REGISTRY.optimizer_spec({"type": name, **EXTRA.get(name, {})}).compile == "auto", name


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


@pytest.mark.skipif(not compile_available(), reason="no C++ compiler for torch.compile here")
def test_auto_decides_per_param_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large model's no-decay group (biases, norms) stays eager while its weight group compiles: compiled,
    its many small per-tensor calls cost more than they save. Threshold lowered to 64 Ki elements; the
    compiled kernel is replaced by a recorder of the tensors it steps."""
    import optreg_sign.functional as F

    stepped: list[int] = []
    monkeypatch.setattr(F, "_compiled", lambda name: lambda p, *args: stepped.append(p.numel()))
    monkeypatch.setenv("OPTREG_AUTO_COMPILE_NUMEL", str(2**16))
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
    optimizer = optreg.build_optimizer({"type": "lion", "lr": 1e-3, "weight_decay": 0.1}, model)
    assert sorted(len(g["params"]) for g in optimizer.param_groups) == [2, 2]  # weights | biases
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    assert stepped == [256 * 256, 256 * 256], "only the two weight matrices take the compiled path"


def test_adamw_auto_keeps_a_small_group_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """AdamW's group path under "auto" where neither torch's fused kernel nor optreg's bf16 C kernel is taken
    (``fused = false``, bf16 state): the large group compiles, the small one steps eagerly, never through a
    compiled per-tensor loop (no compiler needed: the choice is inspected). By default both groups take a
    fused kernel at any size (torch's for float32 state, optreg's C kernel for bf16 state where it builds)."""
    monkeypatch.setenv("OPTREG_AUTO_COMPILE_NUMEL", str(2**16))
    monkeypatch.setattr("optreg.compiling.compile_available", lambda: True)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
    for p in model.parameters():
        p.grad = torch.randn_like(p)

    def paths(spec: dict) -> dict[int, str]:
        optimizer = optreg.build_optimizer({"type": "adamw", **spec}, model)
        return {g["params"][0].ndim: optimizer.impl_for(g, g["params"], [p.grad for p in g["params"]])
                for g in optimizer.param_groups}

    assert paths({}) == {2: "fused", 1: "fused"}
    assert paths({"state_dtype": "bfloat16", "fused": False}) == {2: "compiled", 1: "single"}  # 128 Ki | 512


@pytest.mark.skipif(not compile_available(), reason="no C++ compiler for torch.compile here")
def test_an_explicit_foreach_is_never_compiled_by_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """``foreach = true`` names the path (it has no compiled form): "auto" leaves it alone at any size."""
    import optreg_sign.functional as F

    calls = []
    monkeypatch.setattr(F, "_compiled", lambda name: lambda *args: calls.append(name))
    monkeypatch.setenv("OPTREG_AUTO_COMPILE_NUMEL", str(2**16))
    p = torch.nn.Parameter(torch.randn(256, 256))  # large enough for sign's compiled kernels
    for spec in ({"type": "lion", "foreach": True}, {"type": "signum", "foreach": True}):
        optimizer = optreg.build_optimizer(spec, [p])
        p.grad = torch.randn_like(p)
        optimizer.step()
    assert calls == []
