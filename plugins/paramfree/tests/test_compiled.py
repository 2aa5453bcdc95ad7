"""The compiled path (``compile``) agrees with eager.

Always on (cheap): the kernels of the compiled path run eagerly in place of ``torch.compile``
(``run_compiled`` swapped for a plain loop) and must follow the eager optimizer over several steps, with
float32, float64 and complex parameters, param groups, a group at ``lr = 0`` and ``step_factor`` steps; a
skipped step leaves everything bit-identical; the option's default, checks and routing (what takes the
kernels, what stays eager). Opt-in (``OPTREG_COMPILE_TESTS=1``: compiling costs 10-40 s per kernel on a
2-core CPU): the same comparisons through torch.compile for real. bench/family_step.py paramfree times the paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch
from optreg_paramfree.optim import _common

import optreg

opt_in = pytest.mark.skipif(
    os.environ.get("OPTREG_COMPILE_TESTS") != "1",
    reason="compiling takes 10-40 s per kernel on a 2-core CPU; set OPTREG_COMPILE_TESTS=1 to run",
)

#: The names with a compiled path and a ``compile`` spec option.
WITH_FIELD = ["prodigy", "dadapt_adamw", "dadapt_sgd", "dadapt_lion", "dog", "dowg", "cocob"]
#: The names whose ``compile`` is a constructor option only (specs build them with "auto"):
#: ``tests/test_compile_policy.py`` builds every spec with a ``compile`` field from its defaults and steps it
#: without a loss, which MoMo needs and Mechanic (no default ``inner``) cannot be built from.
CLASS_ONLY = ["momo", "momo_adam", "mechanic"]
COMPILED = WITH_FIELD + CLASS_ONLY
#: A spec of each name for the per-name checks (Mechanic around an inner optimizer that takes step_factor).
SPEC = {name: {"type": name} for name in COMPILED} | {
    "dadapt_sgd": {"type": "dadapt_sgd", "d0": 1e-2},
    "mechanic": {"type": "mechanic", "inner": {"type": "dog", "init_step": "learning_rate", "init_step_value": 0.1},
                 "s_init": 1e-2},
}
#: Inner optimizers without step_factor: those cases step without the gated steps.
NO_STEP_FACTOR = {"sgd"}

#: Configurations reaching every constant branch of the kernels (decay modes, betas[0] = 0, growth caps).
CASES = [
    {"type": "prodigy"},
    {"type": "prodigy", "betas": [0.0, 0.99], "decouple": False, "weight_decay": 1e-2, "safeguard_warmup": True},
    {"type": "prodigy", "weight_decay": 1e-2, "use_bias_correction": True, "growth_rate": 1.5, "d_coef": 2.0},
    {"type": "dadapt_adamw"},
    {"type": "dadapt_adamw", "decouple": False, "weight_decay": 1e-2, "use_bias_correction": True},
    {"type": "dadapt_adamw", "weight_decay": 1e-2, "growth_rate": 2.0},
    {"type": "dadapt_sgd", "d0": 1e-2},
    {"type": "dadapt_sgd", "d0": 1e-2, "momentum": 0.9, "weight_decay": 1e-3, "growth_rate": 1.5},
    {"type": "dadapt_lion"},
    {"type": "dadapt_lion", "weight_decay": 1e-2},
    {"type": "dog"},
    {"type": "dog", "init_step": "learning_rate", "init_step_value": 1e-2, "weight_decay": 1e-3},
    {"type": "dowg"},
    {"type": "dowg", "weight_decay": 1e-2},
    {"type": "cocob"},
    {"type": "cocob", "alpha": 50.0, "weight_decay": 1e-3, "lr": 0.5},
    {"type": "momo"},
    {"type": "momo", "weight_decay": 1e-2, "bias_correction": True, "adapt_lower_bound": True, "lr": 0.5},
    {"type": "momo_adam"},
    {"type": "momo_adam", "weight_decay": 1e-2, "weight_decay_mode": "decoupled", "adapt_lower_bound": True},
    {"type": "momo_adam", "weight_decay": 1e-2, "lower_bound": -1.0},
    SPEC["mechanic"],
    {"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1, "maximize": True}, "s_init": 1e-2, "num_betas": 3},
    {"type": "mechanic", "inner": {"type": "momo"}, "s_init": 1e-2, "weight_decay": 0.0},
]


def _case_id(spec: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return _case_id(value) if isinstance(value, dict) else str(value)

    return "-".join([spec["type"], *(f"{k}={text(v)}" for k, v in spec.items() if k != "type")]).replace(" ", "")


SHAPES = [(5, 7), (7,), (3, 2, 2), (1,), (), (40, 30)]


def _params(dtype: torch.dtype, seed: int = 0, complex_param: bool = False) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(shape, generator=g, dtype=dtype) for shape in SHAPES]
    if complex_param:
        params.append(torch.randn(4, 3, generator=g, dtype=torch.complex128 if dtype == torch.float64
                                  else torch.complex64))
    return params


def _problem(params: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A noisy, well-conditioned quadratic: the gradients ``a * (p - 1) + noise`` (the same noise for every run)
    and the loss ``sum a/2 (p - 1)^2`` (MoMo needs it)."""
    g = torch.Generator().manual_seed(100 + step)
    out, loss = [], torch.zeros((), dtype=torch.float64)
    for p in params:
        real = torch.view_as_real(p) if p.is_complex() else p
        scale = 0.5 + torch.rand(real.shape, generator=g, dtype=real.dtype)
        noise = 0.1 * torch.randn(real.shape, generator=g, dtype=real.dtype)
        grad = scale * (real - 1) + noise
        loss = loss + (0.5 * scale * (real - 1) ** 2).sum()
        out.append(torch.view_as_complex(grad.contiguous()) if p.is_complex() else grad)
    return out, loss


def _build(spec: dict[str, Any], compile: bool | str, params: Any) -> Any:
    """The optimizer of ``spec`` with its ``compile`` option (the constructor's, for :data:`CLASS_ONLY`)."""
    if spec["type"] not in CLASS_ONLY:
        return optreg.build_optimizer({**spec, "compile": compile}, params)
    optimizer = optreg.build_optimizer(spec, params)
    optimizer.compile = compile
    return optimizer


def _step(optimizer: Any, params: list[torch.Tensor], step: int, factor: torch.Tensor | None = None) -> None:
    grads, loss = _problem(params, step)
    for p, grad in zip(params, grads):
        p.grad = grad
    if factor is None:
        optimizer.step(lambda: loss)
    else:
        optimizer.step(lambda: loss, step_factor=factor)


def _groups(params: list[torch.Tensor], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Three groups: the default, one at half the LR, one at ``lr = 0`` (inactive)."""
    return [{"params": params[:3]}, {"params": params[3:5], "lr": 0.5 * spec.get("lr", 1.0)},
            {"params": params[5:], "lr": 0.0}]


def _run(spec: dict[str, Any], compile: bool, params: list[torch.Tensor], steps: int,
         factors: dict[int, torch.Tensor], groups: bool) -> torch.optim.Optimizer:
    optimizer = _build(spec, compile, _groups(params, spec) if groups else params)
    for step in range(steps):
        _step(optimizer, params, step, factors.get(step))
    return optimizer


def _compare(spec: dict[str, Any], *, dtype: torch.dtype = torch.float32, steps: int = 6, groups: bool = False,
             complex_param: bool = True, rtol: float = 1e-5, atol: float = 1e-6) -> torch.optim.Optimizer:
    """Step an eager and a compiled-path optimizer of ``spec`` side by side (steps 3 and 4 gated by a
    step_factor of 0, then 1); the params and the estimates end equal within ``rtol``/``atol``."""
    gated = spec.get("inner", {}).get("type") not in NO_STEP_FACTOR
    factors = {3: torch.zeros(()), 4: torch.ones(())} if gated else {}
    eager_params = _params(dtype, complex_param=complex_param)
    fused_params = [p.clone() for p in eager_params]
    eager = _run(spec, False, eager_params, steps, factors, groups)
    fused = _run(spec, True, fused_params, steps, factors, groups)
    for p, q in zip(eager_params, fused_params):
        torch.testing.assert_close(q, p, rtol=rtol, atol=atol)
    for g_eager, g_fused in zip(eager.param_groups, fused.param_groups):
        for key, value in g_eager.items():
            if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
                torch.testing.assert_close(g_fused[key], value, rtol=10 * rtol, atol=0, msg=key)
    return fused


@pytest.fixture
def kernels_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., None]]:
    """``run_compiled`` replaced by a plain loop over the calls; returns the kernels called, one entry per call."""
    called: list[Callable[..., None]] = []

    def run(kernel: Callable[..., None], calls: list[tuple[Any, ...]]) -> None:
        for args in calls:
            called.append(kernel)
            kernel(*args)

    monkeypatch.setattr(_common, "run_compiled", run)
    return called


# ---------------------------------------------------------------- always on


@pytest.mark.parametrize("name", COMPILED)
def test_the_compile_option_defaults_to_auto_and_is_checked(name: str) -> None:
    if name in WITH_FIELD:
        assert optreg.get_registry().spec_class("optimizer", name)().compile == "auto"
        with pytest.raises(optreg.SpecError, match="compile"):
            optreg.build_optimizer({"type": name, "compile": "yes"}, [torch.zeros(2, requires_grad=True)])
    optimizer = optreg.build_optimizer(SPEC[name], [torch.zeros(2, requires_grad=True)])
    assert optimizer.compile == "auto"
    first = optimizer.inner if name == "mechanic" else [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match='compile must be true, false or "auto"'):
        type(optimizer)(first, compile="yes")


@pytest.mark.parametrize("spec", CASES, ids=_case_id)
def test_the_kernels_follow_the_eager_step(spec: dict[str, Any], kernels_run_eagerly: list[Any]) -> None:
    _compare(spec, groups=True)
    assert kernels_run_eagerly, "nothing took the compiled path"


@pytest.mark.parametrize("name", COMPILED)
def test_the_kernels_keep_float64_in_float64(name: str, kernels_run_eagerly: list[Any]) -> None:
    """In float64 the two paths agree to float64 rounding (nothing rounds to float32 on the way)."""
    _compare(SPEC[name], dtype=torch.float64, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", COMPILED)
def test_a_skipped_step_changes_no_bit(name: str, kernels_run_eagerly: list[Any]) -> None:
    """A ``step_factor = 0`` step (with NaN gradients) leaves params, state and estimates bit-identical."""
    params = _params(torch.float32)
    optimizer = _build(SPEC[name], True, params)
    for step in range(2):
        _step(optimizer, params, step)
    before = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    values = [p.clone() for p in params]
    scalars = {k: v.clone() for k, v in optimizer.param_groups[0].items() if isinstance(v, torch.Tensor)}
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    optimizer.step(lambda: torch.tensor(float("nan")), step_factor=torch.zeros(()))
    for p, value in zip(params, values):
        assert torch.equal(p, value)
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(value, before[key]), key
    for key, value in scalars.items():
        assert torch.equal(optimizer.param_groups[0][key], value), key


@pytest.mark.parametrize("name", COMPILED)
def test_the_state_dict_layout_is_the_eager_one(name: str, kernels_run_eagerly: list[Any]) -> None:
    dicts = []
    for compile in (False, True):
        params = _params(torch.float32)
        optimizer = _build(SPEC[name], compile, params)
        _step(optimizer, params, 0)
        dicts.append(optimizer.state_dict())
    eager, fused = dicts
    assert fused["param_groups"][0].keys() == eager["param_groups"][0].keys()
    assert "compile" not in fused["param_groups"][0]
    for index, entries in eager["state"].items():
        assert {k: (v.shape, v.dtype) for k, v in fused["state"][index].items()} == {
            k: (v.shape, v.dtype) for k, v in entries.items()
        }


@pytest.mark.parametrize("name", ["prodigy", "dadapt_sgd", "dog", "cocob", "momo_adam", "mechanic"])
def test_a_non_contiguous_param_steps_eagerly_beside_compiled_ones(
    name: str, kernels_run_eagerly: list[Any]
) -> None:
    """Only plain contiguous tensors take the kernels; a transposed one takes the eager code in the same step,
    and the result is the all-eager one."""
    spec = SPEC[name]
    results = []
    for compile in (False, True):
        kernels_run_eagerly.clear()
        params = [torch.randn(6, 4, generator=torch.Generator().manual_seed(1)).t(), torch.ones(5)]
        assert not params[0].is_contiguous()
        optimizer = _build(spec, compile, params)
        for step in range(4):
            grads, loss = _problem(params, step)
            for p, grad in zip(params, grads):
                p.grad = grad.t().contiguous().t() if p.dim() == 2 else grad
            optimizer.step(lambda loss=loss: loss)
        calls_per_step = len(kernels_run_eagerly) / 4
        results.append([p.clone() for p in params])
    assert calls_per_step in (1, 2, 3)  # one call per pass, for the contiguous param only (the inner's: eager)
    for p, q in zip(*results):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_prodigy_slice_p_steps_eagerly(kernels_run_eagerly: list[Any]) -> None:
    """``slice_p > 1`` keeps strided slices: those groups take the eager code (same result)."""
    _compare({"type": "prodigy", "slice_p": 3, "growth_rate": 1.5})
    assert not kernels_run_eagerly


@pytest.mark.parametrize("name", COMPILED)
def test_auto_stays_eager_on_small_models_and_compiles_from_the_threshold(
    name: str, kernels_run_eagerly: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from optreg.compiling import compile_available

    params = _params(torch.float32)
    optimizer = optreg.build_optimizer(SPEC[name], params)
    _step(optimizer, params, 0)
    assert not kernels_run_eagerly
    if not compile_available():
        pytest.skip("no C++ compiler for torch.compile here: auto stays eager")
    monkeypatch.setenv("OPTREG_AUTO_COMPILE_NUMEL", "0")
    _step(optimizer, params, 1)
    inner = getattr(optimizer, "inner", None)
    if name in AUTO_STAYS_EAGER:  # its compiled path measured no faster: auto never takes it, true does
        assert not kernels_run_eagerly
        _step(optreg.build_optimizer({**SPEC[name], "compile": True} if name in WITH_FIELD else SPEC[name], params),
              params, 2)
        assert kernels_run_eagerly or name not in WITH_FIELD
    else:
        assert kernels_run_eagerly, (name, inner)


#: The algorithms whose compiled path measured no faster than eager on 10 x 1024x1024 (docs/paramfree.md):
#: ``compile = "auto"`` keeps them eager at any size.
AUTO_STAYS_EAGER = {"dog", "dowg", "dadapt_sgd", "momo"}


def test_an_optimizer_pickled_before_the_option_stays_eager() -> None:
    """The option is an attribute (not in the param groups, so checkpoints keep their layout); an optimizer
    unpickled from before it existed has none and steps eagerly."""
    optimizer = optreg.build_optimizer({"type": "prodigy"}, [torch.zeros(2, requires_grad=True)])
    state = optimizer.__getstate__()
    del state["compile"]
    fresh = type(optimizer).__new__(type(optimizer))
    fresh.__setstate__(state)
    assert fresh.compile is False and not fresh.compiling()


# ---------------------------------------------------------------- opt-in: through torch.compile


@opt_in
@pytest.mark.parametrize("spec", CASES, ids=_case_id)
def test_compiled_matches_eager(spec: dict[str, Any]) -> None:
    _compare(spec, groups=True)


@opt_in
def test_compiled_prodigy_in_float64() -> None:
    _compare({"type": "prodigy"}, dtype=torch.float64, rtol=1e-12, atol=1e-13)
