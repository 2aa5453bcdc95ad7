"""The public functional layer: stable signature, gating without a host sync, agreement with the optimizers."""

from __future__ import annotations

import inspect

import pytest
import torch
from optreg_sign import Lion, Signum, functional, lion, lion_update_, signum, signum_update_


def test_lion_update_signature_is_stable():
    """Other plugins (Muon's non-matrix params) call this: positional tensors, keyword-only options."""
    sig = inspect.signature(lion_update_)
    params = list(sig.parameters.values())
    assert [p.name for p in params[:3]] == ["param", "grad", "exp_avg"]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:3])
    keyword = {p.name: p.default for p in params[3:]}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:])
    for name in ("lr", "beta1", "beta2", "weight_decay"):
        assert keyword[name] is inspect.Parameter.empty
    assert keyword["maximize"] is False
    assert keyword["step_factor"] is None


def _data(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 4, generator=g).to(dtype) for _ in range(3)]


def test_lion_update_equals_the_optimizer_step():
    p, grad, m = _data()
    q = p.clone().requires_grad_()
    opt = Lion([q], lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    opt.state[q]["exp_avg"] = m.clone()
    q.grad = grad.clone()
    opt.step()
    lion_update_(p, grad, m, lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.1)
    assert torch.equal(p, q.detach())
    assert torch.equal(m, opt.state[q]["exp_avg"])


@pytest.mark.parametrize("path", ["single", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lion_step_factor_gates_exactly(path, dtype):
    foreach = path == "foreach"
    p, grad, m = _data(dtype=dtype)
    kwargs = {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "foreach": foreach}
    plain_p, plain_m = p.clone(), m.clone()
    lion([plain_p], [grad], [plain_m], **kwargs)
    one_p, one_m = p.clone(), m.clone()
    lion([one_p], [grad], [one_m], step_factor=torch.ones(()), **kwargs)
    assert torch.equal(plain_p, one_p) and torch.equal(plain_m, one_m), "step_factor=1 must equal the plain step"
    assert one_p.dtype == dtype and one_m.dtype == dtype
    nan = torch.full_like(grad, float("nan"))
    zero_p, zero_m = p.clone(), m.clone()
    lion([zero_p], [nan], [zero_m], step_factor=torch.zeros(()), **kwargs)
    assert torch.equal(zero_p, p) and torch.equal(zero_m, m), "step_factor=0 must leave every bit in place"


@pytest.mark.parametrize("path", ["single", "foreach"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_signum_step_factor_gates_exactly(path, nesterov):
    foreach = path == "foreach"
    p, grad, m = _data()
    step = torch.tensor(3.0)
    kwargs = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1, "nesterov": nesterov, "correct_bias": True,
                  "use_shape_scaling": True, "foreach": foreach}
    plain = [p.clone(), m.clone(), step.clone()]
    signum([plain[0]], [grad], [plain[1]], [plain[2]], **kwargs)
    one = [p.clone(), m.clone(), step.clone()]
    signum([one[0]], [grad], [one[1]], [one[2]], step_factor=torch.ones(()), **kwargs)
    for a, b in zip(plain, one):
        assert torch.equal(a, b)
    assert float(one[2]) == 4.0
    zero = [p.clone(), m.clone(), step.clone()]
    signum([zero[0]], [torch.full_like(grad, float("inf"))], [zero[1]], [zero[2]], step_factor=torch.zeros(()),
           **kwargs)
    for a, b in zip(zero, (p, m, step)):
        assert torch.equal(a, b)


def test_signum_update_equals_the_optimizer_step():
    p, grad, _m = _data()
    q = p.clone().requires_grad_()
    opt = Signum([q], lr=0.01, momentum=0.9, nesterov=True, correct_bias=True, use_shape_scaling=True)
    q.grad = grad.clone()
    opt.step()
    buf, step = torch.zeros_like(p), torch.zeros(())
    signum_update_(p, grad, buf, step, lr=0.01, momentum=0.9, weight_decay=0.0, nesterov=True, correct_bias=True,
                   use_shape_scaling=True)
    assert torch.equal(p, q.detach())
    assert torch.equal(buf, opt.state[q]["momentum_buffer"])
    assert torch.equal(step, opt.state[q]["step"])


def test_signsgd_functional_without_state():
    p, grad, _ = _data()
    before = p.clone()
    signum_update_(p, grad, None, None, lr=0.5, momentum=0.0, weight_decay=0.0)
    assert torch.equal(p, before - 0.5 * torch.sign(grad))


@pytest.mark.slow
def test_compiled_kernels_match_eager(monkeypatch):
    """The opt-in compiled path (one torch.compile per kernel; seconds on first use) against eager."""
    monkeypatch.setattr(functional, "COMPILE_MIN_NUMEL", 0)  # small shapes, yet through the kernels
    shapes = [(6, 5), (7,), (3, 4, 2)]
    g = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
        params = [torch.randn(s, generator=g).to(dtype) for s in shapes]
        states = [torch.randn(s, generator=g).to(dtype) for s in shapes]
        eager_p, eager_m = [p.clone() for p in params], [m.clone() for m in states]
        comp_p, comp_m = [p.clone() for p in params], [m.clone() for m in states]
        for _step in range(3):
            grads = [torch.randn(s, generator=g).to(dtype) for s in shapes]
            kwargs = {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1}
            lion(eager_p, grads, eager_m, **kwargs)
            lion(comp_p, grads, comp_m, compiled=True, **kwargs)
            # a step with factor 0 and NaN grads changes nothing in the compiled kernel either
            before = [t.clone() for t in comp_p + comp_m]
            lion(comp_p, [torch.full_like(x, float("nan")) for x in grads], comp_m, compiled=True,
                 step_factor=torch.zeros(()), **kwargs)
            assert all(torch.equal(a, b) for a, b in zip(before, comp_p + comp_m))
        for a, b in zip(eager_p + eager_m, comp_p + comp_m):
            torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)

    # the optimizer's `compile` option runs the same kernel
    weights = [torch.randn(s, generator=g).requires_grad_() for s in shapes]
    copies = [w.detach().clone() for w in weights]
    opt = Lion(weights, lr=0.01, weight_decay=0.1, compile=True)
    for w in weights:
        w.grad = torch.randn(w.shape, generator=g)
    opt.step()
    lion(copies, [w.grad for w in weights], [torch.zeros_like(c) for c in copies], lr=0.01, beta1=0.9, beta2=0.99,
         weight_decay=0.1, compiled=True)
    assert all(torch.equal(w.detach(), c) for w, c in zip(weights, copies))

    params = [torch.randn(s, generator=g) for s in shapes]
    eager = [[p.clone() for p in params], [torch.zeros_like(p) for p in params], [torch.zeros(()) for _ in params]]
    comp = [[p.clone() for p in params], [torch.zeros_like(p) for p in params], [torch.zeros(()) for _ in params]]
    kwargs = {
        "lr": 0.01, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True, "correct_bias": True,
        "use_shape_scaling": True,
    }
    for _ in range(3):
        grads = [torch.randn(s, generator=g) for s in shapes]
        signum(*eager[:1], grads, *eager[1:], **kwargs)
        signum(*comp[:1], grads, *comp[1:], compiled=True, **kwargs)
    for a, b in zip([t for ts in eager for t in ts], [t for ts in comp for t in ts]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_compiled_leaves_small_tensors_to_the_eager_path(monkeypatch):
    """Below COMPILE_MIN_NUMEL the compiled path runs eager ops (no compile needed, exact same result)."""
    calls = []
    monkeypatch.setattr(functional, "_compiled", lambda name: calls.append(name))
    p, grad, m = _data()
    q, n = p.clone(), m.clone()
    lion([p], [grad], [m], lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.1, compiled=True)
    lion([q], [grad], [n], lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.1)
    assert torch.equal(p, q) and torch.equal(m, n)
    b, s = torch.zeros_like(p), torch.zeros(())
    signum([p], [grad], [b], [s], lr=0.01, momentum=0.9, weight_decay=0.0, compiled=True)
    assert float(s) == 1.0
    assert calls == [], "no kernel is compiled for these shapes"


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda p: Lion(p, lr=-1.0), r"lr must be >= 0, got -1\.0"),
        (lambda p: Lion(p, betas=(0.9, 1.0)), r"betas\[1\] must be in \[0, 1\), got 1\.0"),
        (lambda p: Lion(p, weight_decay=-0.1), r"weight_decay must be >= 0, got -0\.1"),
        (lambda p: Lion(p, foreach=True, compile=True), "not both"),
        (lambda p: Signum(p, momentum=1.0), r"momentum must be in \[0, 1\), got 1\.0"),
        (lambda p: Signum(p, momentum=0.0, nesterov=True), "momentum > 0"),
    ],
)
def test_constructor_checks_use_the_specs_words(build, match):
    """A Python user gets the check and the message of a spec file."""
    with pytest.raises(ValueError, match=match):
        build([torch.nn.Parameter(torch.zeros(2))])


def test_signsgd_is_signum_without_momentum():
    """``SignSGD`` (what ``signsgd`` builds) defaults to no momentum, as the spec does; ``Signum`` to 0.9."""
    from optreg_sign import SignSGD

    p = torch.nn.Parameter(torch.zeros(3))
    assert SignSGD([p]).defaults["momentum"] == 0.0 and Signum([p]).defaults["momentum"] == 0.9
    p.grad = torch.tensor([1.0, -2.0, 0.5])
    opt = SignSGD([p], lr=0.5)
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([-0.5, 0.5, -0.5]))
    assert not any(opt.state.values()), "signSGD keeps no state"
