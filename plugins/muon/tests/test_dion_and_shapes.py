"""Dion (full rank vs the SVD polar factor, low rank on an MLP), shapes (conv, QKV heads) and routing."""

import pytest
import torch
from optreg_muon import Dion, Muon
from optreg_muon.functional.newton_schulz import newton_schulz, polar_factor, resolve_coefficients
from torch import nn

import optreg


def test_dion_full_rank_matches_the_polar_factor() -> None:
    """With rank_fraction = 1 and a converged power iteration, the update is U V^T of the momentum buffer."""
    torch.manual_seed(0)
    rows, cols = 12, 20
    U, _ = torch.linalg.qr(torch.randn(rows, rows))
    V, _ = torch.linalg.qr(torch.randn(cols, rows))
    grad = U @ torch.diag(torch.linspace(3.0, 0.5, rows)) @ V.T  # distinct singular values
    p = nn.Parameter(torch.zeros(rows, cols))
    lr = 0.1
    opt = Dion([p], lr=lr, mu=0.9, rank_fraction=1.0, power_iters=40, adjust_lr="none")
    p.grad = grad.clone()
    opt.step()
    update = -p.detach() / lr
    torch.testing.assert_close(update.double(), polar_factor(grad), rtol=1e-4, atol=1e-4)
    # Full rank leaves exactly mu * B in the buffer (B = M + G = G on the first step).
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], 0.9 * grad, rtol=1e-5, atol=1e-6)


def test_dion_full_rank_tracks_the_polar_factor_with_one_power_step() -> None:
    """One power-iteration step per optimizer step, warm-started: the update converges to the polar factor."""
    torch.manual_seed(1)
    rows, cols = 10, 16
    U, _ = torch.linalg.qr(torch.randn(rows, rows))
    V, _ = torch.linalg.qr(torch.randn(cols, rows))
    grad = U @ torch.diag(torch.logspace(0.5, -0.5, rows)) @ V.T
    p = nn.Parameter(torch.zeros(rows, cols))
    opt = Dion([p], lr=1.0, mu=0.5, adjust_lr="none")
    for _ in range(60):
        before = p.detach().clone()
        p.grad = grad.clone()
        opt.step()
    update = before - p.detach()
    torch.testing.assert_close(update.double(), polar_factor(grad), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("rank_fraction", [0.25, 0.5])
def test_dion_low_rank_reduces_loss_on_a_tiny_mlp(rank_fraction: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    x = torch.randn(64, 16)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    opt = optreg.build_optimizer({"type": "dion", "lr": 0.02, "adam_lr": 0.01, "rank_fraction": rank_fraction}, model)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    q_shapes = sorted(opt.state[p]["Q"].shape for g in opt.param_groups if g["algorithm"] == "dion"
                      for p in g["params"])
    # Q is (cols, r) with r = rank_fraction * min(rows, cols); the 1x32 output layer has rank 1.
    assert q_shapes == sorted([(16, int(rank_fraction * 16)), (32, int(rank_fraction * 32)), (32, 1)])
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_dion_rank_rounding() -> None:
    assert Dion.rank(100, 60, 0.1, 8) == 8
    assert Dion.rank(100, 60, 0.5, 16) == 32
    assert Dion.rank(10, 6, 1.0, 16) == 6


def test_conv_weights_are_flattened_or_batched() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(8, 3, 3, 3))
    grad = torch.randn(8, 3, 3, 3)
    coefficients = resolve_coefficients("muon", 5)
    for flatten in (True, False):
        q = nn.Parameter(w.detach().clone())
        opt = Muon([q], lr=1.0, momentum=0.0, nesterov=False, adjust_lr="none", flatten=flatten, ns_backend="torch")
        q.grad = grad.clone()
        opt.step()
        view = grad.reshape(8, 27) if flatten else grad
        expected = w.detach() - newton_schulz(view, coefficients, backend="torch").reshape(w.shape).float()
        # Exact on every machine: the optimizer makes this very Newton-Schulz call (one param: no batching
        # with others), and momentum 0 passes the gradient through unchanged.
        torch.testing.assert_close(q.detach(), expected, rtol=0, atol=0)


def test_fused_qkv_is_orthogonalized_per_head() -> None:
    torch.manual_seed(0)
    d, heads = 8, 2
    qkv = nn.Parameter(torch.zeros(3 * d, d))
    grad = torch.randn(3 * d, d)
    opt = Muon([qkv], lr=1.0, momentum=0.0, nesterov=False, adjust_lr="none", split_sizes=(d, d, d),
               num_heads=heads, ns_backend="torch")
    qkv.grad = grad.clone()
    opt.step()
    coefficients = resolve_coefficients("muon", 5)
    blocks = grad.reshape(3 * heads, d // heads, d)
    expected = -newton_schulz(blocks, coefficients, backend="torch").reshape(3 * d, d).float()
    # Exact on every machine: with foreach on (the default) the optimizer stacks the 3 x 2 head blocks into
    # this very (6, 4, 8) batch and makes the same call.
    torch.testing.assert_close(qkv.detach(), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="add up"):
        Muon([nn.Parameter(torch.zeros(10, 4))], split_sizes=(4, 4))


def test_unequal_blocks_get_their_own_lr_ratio() -> None:
    qkv = nn.Parameter(torch.zeros(12, 4))
    grad = torch.randn(12, 4)
    opt = Muon([qkv], lr=1.0, momentum=0.0, nesterov=False, split_sizes=(8, 4), ns_backend="torch")
    qkv.grad = grad
    opt.step()
    coefficients = resolve_coefficients("muon", 5)
    top = newton_schulz(grad[:8], coefficients, backend="torch").float() * 2**0.5  # sqrt(8/4)
    bottom = newton_schulz(grad[8:], coefficients, backend="torch").float()  # square: ratio 1
    torch.testing.assert_close(qkv.detach(), -torch.cat([top, bottom]), rtol=1e-6, atol=1e-6)


def test_plain_parameters_are_routed_by_ndim() -> None:
    w, b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4))
    opt = Muon([w, b], adam_lr=0.123, non_matrix_algorithm="lion")
    algorithms = {g["algorithm"]: g for g in opt.param_groups}
    assert set(algorithms) == {"muon", "lion"}
    assert algorithms["lion"]["lr"] == 0.123 and algorithms["lion"]["params"] == [b]
    with pytest.raises(ValueError, match="belongs in"):
        Muon([{"params": [b], "algorithm": "muon"}])


def test_groups_cli_shows_the_routing(capsys) -> None:
    from optreg.cli import main

    spec = "schema_version = 1\n[optimizer]\ntype = \"muon\"\n"
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "m.toml"
        path.write_text(spec)
        try:
            main(["groups", str(path), "--model", "transformer"])
        except SystemExit as exc:
            assert not exc.code
    out = capsys.readouterr().out
    assert "muon" in out and "adamw" in out
