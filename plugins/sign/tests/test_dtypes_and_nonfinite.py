"""Non-finite gradients, float64 and complex parameters on every path (per-tensor, foreach, compiled).

A NaN or +-inf gradient must reach the parameter as NaN (``torch.sign(NaN)`` is 0, which would
freeze the coordinate while the momentum holds NaN for ever); float64 parameters must step in
float64 on every path; complex parameters step as their ``torch.view_as_real``.
"""

from __future__ import annotations

import pytest
import torch
from optreg_sign import Lion, Signum, functional, lion, signum

PATHS = ["single", "foreach", "compiled"]

CONFIGS = {
    "lion": {"kind": "lion", "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1},
    "lion-no-decay": {"kind": "lion", "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
    "signum": {"kind": "signum", "momentum": 0.9, "weight_decay": 0.1},
    "signum-nesterov": {"kind": "signum", "momentum": 0.9, "weight_decay": 0.0, "nesterov": True},
    "signum-nesterov-bias-scaled": {
        "kind": "signum", "momentum": 0.9, "weight_decay": 0.1, "nesterov": True, "correct_bias": True,
        "use_shape_scaling": True,
    },
    "signsgd": {"kind": "signum", "momentum": 0.0, "weight_decay": 0.1},
    "signsgd-scaled": {"kind": "signum", "momentum": 0.0, "weight_decay": 0.0, "use_shape_scaling": True},
}


@pytest.fixture
def small_tensors_compile(monkeypatch):
    """Send the tests' small tensors through the compiled kernels (one compile per kernel and dtype)."""
    monkeypatch.setattr(functional, "COMPILE_MIN_NUMEL", 0)


def _path_kwargs(path: str) -> dict:
    return {"foreach": path == "foreach", "compiled": path == "compiled"}


def _state_for(config: dict, params: list[torch.Tensor]) -> list[list]:
    """Fresh state lists for ``config``: ``[exp_avgs]`` (lion) or ``[bufs, steps]`` (signum)."""
    if config["kind"] == "lion":
        return [[torch.zeros_like(p) for p in params]]
    if config["momentum"] > 0:
        return [[torch.zeros_like(p) for p in params], [torch.zeros(()) for _ in params]]
    return [[None for _ in params], [None for _ in params]]


def _step(config: dict, params, grads, state, *, lr, path, step_factor=None) -> None:
    options = {k: v for k, v in config.items() if k != "kind"}
    if config["kind"] == "lion":
        lion(params, grads, *state, lr=lr, step_factor=step_factor, **_path_kwargs(path), **options)
    else:
        signum(params, grads, *state, lr=lr, step_factor=step_factor, **_path_kwargs(path), **options)


def _clone(state):
    return [[None if t is None else t.clone() for t in ts] for ts in state]


BAD = (0, 1, 2)  # flat indices that get NaN, +inf and -inf


@pytest.mark.usefixtures("small_tensors_compile")
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "step_factor=1"])
@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_nan_and_inf_gradients_reach_the_param(name, path, lr_kind, gated):
    """NaN, +inf and -inf in a gradient make exactly those coordinates NaN; the others step as usual."""
    config = CONFIGS[name]
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (7,)]
    start = [torch.randn(s, generator=g) for s in shapes]
    warm = [torch.randn(s, generator=g) for s in shapes]
    grads = [torch.randn(s, generator=g) for s in shapes]
    lr = 0.01 if lr_kind == "float" else torch.tensor(0.01)
    factor = torch.ones(()) if gated else None

    runs = {}
    for label in ("faulty", "finite"):
        params = [p.clone() for p in start]
        state = _state_for(config, params)
        _step(config, params, warm, state, lr=lr, path=path, step_factor=factor)  # state is not zero any more
        step_grads = [x.clone() for x in grads]
        if label == "faulty":
            flat = step_grads[0].view(-1)
            flat[BAD[0]], flat[BAD[1]], flat[BAD[2]] = float("nan"), float("inf"), float("-inf")
        else:
            step_grads[0].view(-1)[list(BAD)] = 0.0
        _step(config, params, step_grads, state, lr=lr, path=path, step_factor=factor)
        runs[label] = (params, state)

    faulty, finite = runs["faulty"][0], runs["finite"][0]
    bad = faulty[0].view(-1)[list(BAD)]
    assert bad.isnan().all(), f"coordinates with a NaN / +inf / -inf gradient must become NaN, got {bad.tolist()}"
    others = torch.ones(faulty[0].numel(), dtype=torch.bool)
    others[list(BAD)] = False
    # the update is elementwise and both runs take the same path: the other coordinates agree bit for bit
    assert torch.equal(faulty[0].view(-1)[others], finite[0].view(-1)[others])
    assert torch.equal(faulty[1], finite[1])
    # the next finite step keeps the NaN visible (nothing silently recovers or freezes)
    params, state = runs["faulty"]
    _step(config, params, grads, state, lr=lr, path=path, step_factor=factor)
    assert params[0].view(-1)[list(BAD)].isnan().all()
    assert torch.isfinite(params[0].view(-1)[others]).all() and torch.isfinite(params[1]).all()


@pytest.mark.usefixtures("small_tensors_compile")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_factor_zero_still_keeps_every_bit_with_non_finite_grads(name, path):
    config = CONFIGS[name]
    g = torch.Generator().manual_seed(1)
    params = [torch.randn(6, 5, generator=g)]
    state = _state_for(config, params)
    _step(config, params, [torch.randn(6, 5, generator=g)], state, lr=0.01, path=path)
    before_p, before_s = [p.clone() for p in params], _clone(state)
    bad = torch.randn(6, 5, generator=g)
    bad.view(-1)[list(BAD)] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    _step(config, params, [bad], state, lr=0.01, path=path, step_factor=torch.zeros(()))
    assert torch.equal(params[0], before_p[0])
    for now, then in zip(state, before_s):
        for a, b in zip(now, then):
            assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("optimizer", ["lion", "signum"])
def test_the_optimizers_let_a_nan_gradient_reach_the_param(optimizer):
    """Through the optimizer classes (the per-tensor path of the default CPU configuration)."""
    weight = torch.nn.Parameter(torch.ones(4))
    opt = Lion([weight], lr=0.1) if optimizer == "lion" else Signum([weight], lr=0.1)
    weight.grad = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    opt.step()
    assert weight[1].isnan() and torch.isfinite(weight[[0, 2, 3]]).all()


@pytest.mark.slow
def test_nan_reaches_the_param_when_the_whole_step_is_compiled():
    """``torch.compile(opt.step)`` traces the eager ops: inductor must not fold the ``0 * x`` that carries NaN."""
    weight = torch.nn.Parameter(torch.ones(8))
    opt = Lion([weight], lr=0.1)
    step = torch.compile(opt.step)
    weight.grad = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.0, 1.0, -1.0, 2.0, 3.0])
    step()
    assert weight[:3].isnan().all() and torch.isfinite(weight[3:]).all()


# ---------------------------------------------------------------- float64


@pytest.mark.usefixtures("small_tensors_compile")
@pytest.mark.parametrize("path", ["foreach", "compiled"])
@pytest.mark.parametrize("name", ["lion", "signum-nesterov-bias-scaled", "signsgd"])
def test_float64_steps_in_float64_on_every_path(name, path):
    """float64 params step in float64 on the other paths too (the compiled kernel once computed in float32).

    Compared with the per-tensor float64 step (itself checked against the written-out rule in test_parity
    and op by op by the kit's float64 check) at 1e-13: float32 anywhere would show at ~1e-8.
    """
    config = CONFIGS[name]
    g = torch.Generator().manual_seed(2)
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 5), (7,)]]
    runs = []
    for run_path in ("single", path):
        params = [p.clone() for p in start]
        state = _state_for(config, params)
        gen = torch.Generator().manual_seed(3)
        for _ in range(4):
            grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
            _step(config, params, grads, state, lr=0.01, path=run_path)
        runs.append((params, state))
    (ref_p, ref_s), (got_p, got_s) = runs
    for a, b in zip(ref_p, got_p):
        assert b.dtype == torch.float64
        torch.testing.assert_close(b, a, rtol=1e-13, atol=1e-13)
    for ts_a, ts_b in zip(ref_s, got_s):
        for a, b in zip(ts_a, ts_b):
            if a is not None and a.dim() > 0:
                assert b.dtype == torch.float64
                torch.testing.assert_close(b, a, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["lion", "signum"])
def test_a_float32_tensor_lr_does_not_narrow_a_float64_step(optimizer):
    """``1 - lr * weight_decay`` with a float32 tensor LR is computed in float64 for float64 params."""
    lr32 = torch.tensor(0.0123, dtype=torch.float32)
    results = []
    for lr in (lr32, float(lr32)):  # the same value, once as a float32 tensor, once as a Python float
        weight = torch.nn.Parameter(torch.full((3,), 1.0 + 1e-12, dtype=torch.float64))
        opt = (Lion([weight], lr=lr, weight_decay=0.7) if optimizer == "lion"
               else Signum([weight], lr=lr, weight_decay=0.7))
        weight.grad = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
        opt.step()
        results.append(weight.detach().clone())
    # both compute 1 - lr * wd in float64 (the tensor path multiplies by it, the float path too)
    torch.testing.assert_close(results[0], results[1], rtol=1e-15, atol=1e-15)


# ---------------------------------------------------------------- complex


@pytest.mark.usefixtures("small_tensors_compile")
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "step_factor"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["lion", "signum-nesterov-bias-scaled", "signsgd-scaled"])
def test_complex_params_step_as_their_real_view(name, path, gated):
    """A complex tensor steps exactly as ``view_as_real`` of it (shape scaling sees the real view's shape)."""
    config = CONFIGS[name]
    g = torch.Generator().manual_seed(4)
    z = [torch.randn(4, 3, dtype=torch.complex64, generator=g), torch.randn(5, dtype=torch.complex64, generator=g)]
    r = [torch.view_as_real(t).clone() for t in z]
    state_z, state_r = _state_for(config, z), _state_for(config, r)
    for step in range(3):
        grads = [torch.randn(t.shape, dtype=torch.complex64, generator=g) for t in z]
        factor = torch.tensor(float(step != 1)) if gated else None  # the gated run skips its second step
        _step(config, z, grads, state_z, lr=0.01, path=path, step_factor=factor)
        _step(config, r, [torch.view_as_real(x).clone() for x in grads], state_r, lr=0.01, path=path,
              step_factor=factor)
    for a, b in zip(z, r):
        assert a.dtype == torch.complex64
        assert torch.equal(torch.view_as_real(a), b)
    for ts_z, ts_r in zip(state_z, state_r):
        for a, b in zip(ts_z, ts_r):
            if a is not None:
                assert torch.equal(torch.view_as_real(a) if a.is_complex() else a, b)
