"""Parity: muon vs torch.optim.Muon, normuon vs the paper's rule, the AdamW branch vs torch.optim.AdamW."""

import copy
import math

import pytest
import torch
from optreg_muon import Muon, NorMuon
from optreg_muon.functional.newton_schulz import resolve_coefficients
from torch import nn

import optreg

SHAPES = [(16, 16), (24, 12), (12, 24), (16, 16), (24, 12)]  # square, tall, wide; repeated shapes get batched


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=g)) for s in SHAPES]


def _grads(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(*s, generator=g) for s in SHAPES]


def _run(opt: torch.optim.Optimizer, params: list[nn.Parameter], steps: int = 10) -> None:
    for step in range(steps):
        for p, g in zip(params, _grads(step)):
            p.grad = g
        opt.step()


#: bf16 keeps 8 significant bits: on [2^e, 2^(e+1)) its spacing (one ulp) is 2^(e-7).
BF16_ULP_AT_1 = 2.0**-7


def _ratio(rule: str, rows: int, cols: int) -> float:
    """torch.optim.Muon's LR adjustment, written out (independent of the code under test)."""
    return math.sqrt(max(1.0, rows / cols)) if rule == "spectral_norm" else 0.2 * math.sqrt(max(rows, cols))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"adjust_lr": "spectral_norm"}, {"adjust_lr_fn": None}),
        ({"adjust_lr": "spectral_norm"}, {"adjust_lr_fn": "original"}),
        ({"adjust_lr": "match_rms_adamw"}, {"adjust_lr_fn": "match_rms_adamw"}),
        ({"adjust_lr": "spectral_norm", "nesterov": False, "momentum": 0.9}, {"nesterov": False, "momentum": 0.9}),
    ],
)
@pytest.mark.parametrize("foreach", [False, True])
def test_muon_equals_torch_muon(ours: dict, theirs: dict, foreach: bool) -> None:
    """Torch's kernel (ns_backend="torch") gives torch.optim.Muon's result over 10 steps.

    Bit for bit wherever both run the same operations on every machine: the momentum buffers (an EMA of
    the same gradients, independent of Newton-Schulz) always, and the params with ``foreach=False``
    (one ``addmm`` chain per matrix, as torch) or of a shape no other matrix shares (a batch of one is
    the same chain). Matrices batched by shape run ``baddbmm``, whose bf16 rounding differs from
    ``addmm`` on some CPUs (measured: up to 1.1e-4 on the 24x12 pair on an AVX-512-bf16 EPYC; identical
    on others), so those params are held to the bound bf16 implies (see ``bound`` below).
    """
    a, b = _params(), _params()
    kw = {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True}
    ref = torch.optim.Muon(b, **{**kw, **theirs})
    mine = Muon(a, ns_coefficients="muon", ns_backend="torch", foreach=foreach, **{**kw, **ours})
    steps = 10
    _run(ref, b, steps)
    _run(mine, a, steps)
    rule = ours["adjust_lr"]
    for shape, pa, pb in zip(SHAPES, a, b):
        assert torch.equal(mine.state[pa]["momentum_buffer"], ref.state[pb]["momentum_buffer"]), shape
        if not foreach or SHAPES.count(shape) == 1:
            torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=lambda m, shape=shape: f"{shape}: {m}")
            continue
        # Batched: each Newton-Schulz output entry is a bf16 number of magnitude <= 1.21 (the quintic's
        # ceiling bounds the spectral norm, hence every entry), where one bf16 ulp is at most 2^-7; two
        # rounding orders of the same products land within 2 ulps of each other, |dO| <= 2 * 2^-7. Step k
        # moves p by lr * ratio * O (the decay factor 1 - lr * wd < 1 only shrinks earlier differences,
        # and the momentum is identical), so after `steps` steps |dp| <= steps * lr * ratio * 2 * 2^-7
        # (10 * 0.02 * sqrt(2) * 2^-6 = 4.4e-3 for 24x12 with spectral_norm; 3.1e-3 for 16x16). Real
        # differences are larger (measured on these params: no LR ratio 3e-2, no decay 6e-2 to 8e-2,
        # weight_decay 0.09 for 0.1: 6e-3 to 8e-3), and the momentum buffers are compared exactly above.
        rows, cols = shape
        bound = steps * kw["lr"] * _ratio(rule, rows, cols) * 2 * BF16_ULP_AT_1
        torch.testing.assert_close(pa, pb, rtol=0, atol=bound, msg=lambda m, shape=shape: f"{shape}: {m}")


def test_adjust_lr_none_equals_torch_on_wide_matrices() -> None:
    """adjust_lr = "none" is no adjustment; torch's default only differs from it on tall matrices."""
    g = torch.Generator().manual_seed(0)
    a = [nn.Parameter(torch.randn(12, 24, generator=g))]
    b = [nn.Parameter(a[0].detach().clone())]
    ref = torch.optim.Muon(b, lr=0.02, weight_decay=0.0)
    mine = Muon(a, lr=0.02, adjust_lr="none", ns_backend="torch")
    for _step in range(5):
        grad = torch.randn(12, 24, generator=g)
        a[0].grad, b[0].grad = grad, grad.clone()
        ref.step()
        mine.step()
    assert torch.equal(a[0], b[0])  # one matrix: the same addmm chain as torch on every machine


def test_auto_backend_close_to_torch_muon() -> None:
    """The default backend (fp32 GEMMs rounded to bf16 on CPUs without native bf16) stays within bf16 noise.

    Same bound as the batched case of test_muon_equals_torch_muon: per step |dO| <= 2 bf16 ulps of an entry
    of magnitude <= 1.21 (2 * 2^-7), times lr * ratio, over the steps (momentum buffers are identical).
    """
    a, b = _params(), _params()
    ref = torch.optim.Muon(b, lr=0.02, weight_decay=0.1)
    mine = Muon(a, lr=0.02, weight_decay=0.1)
    steps = 10
    _run(ref, b, steps)
    _run(mine, a, steps)
    for shape, pa, pb in zip(SHAPES, a, b):
        assert torch.equal(mine.state[pa]["momentum_buffer"], ref.state[pb]["momentum_buffer"]), shape
        bound = steps * 0.02 * _ratio("spectral_norm", *shape) * 2 * BF16_ULP_AT_1
        torch.testing.assert_close(pa, pb, rtol=0, atol=bound, msg=lambda m, shape=shape: f"{shape}: {m}")


def test_normuon_equals_the_paper_rule() -> None:
    """NorMuon (arXiv 2510.05491, Algorithm 1) written out: EMA momentum, NS, per-row v, 0.2*lr*sqrt(mn)/||O||_F."""
    torch.manual_seed(0)
    shape = (24, 12)
    p = nn.Parameter(torch.randn(*shape))
    ref_p = p.detach().clone()
    lr, wd, beta1, beta2, eps = 0.02, 0.05, 0.95, 0.9, 1e-8
    opt = NorMuon([p], lr=lr, momentum=beta1, muon_beta2=beta2, weight_decay=wd, ns_dtype="float32",
                  ns_backend="torch")
    coefficients = resolve_coefficients("muon", 5)
    from optreg_muon.functional.newton_schulz import newton_schulz

    m = torch.zeros(shape)
    v = torch.zeros(shape[0], 1)
    for _step in range(6):
        grad = torch.randn(*shape)
        p.grad = grad.clone()
        opt.step()
        m = beta1 * m + (1 - beta1) * grad
        o = newton_schulz(m, coefficients, dtype=torch.float32, backend="torch")
        v = beta2 * v + (1 - beta2) * (o * o).mean(dim=1, keepdim=True)
        o_hat = o / (v.sqrt() + eps)
        step_size = 0.2 * lr * math.sqrt(shape[0] * shape[1]) / o_hat.norm()
        ref_p = ref_p - lr * wd * ref_p - step_size * o_hat
    torch.testing.assert_close(p.detach(), ref_p, rtol=1e-5, atol=1e-6)


def test_non_matrix_branch_equals_torch_adamw() -> None:
    """Biases, norms, embeddings and the head take AdamW with the adam_* options (no decay on no_decay roles)."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("embedding", nn.Embedding(10, 8))
    model.add_module("fc", nn.Linear(8, 8))
    model.add_module("norm", nn.LayerNorm(8))
    model.add_module("head", nn.Linear(8, 3))
    ref_model = copy.deepcopy(model)
    ref_model.fc.weight.requires_grad_(False)  # the matrix is held still in both runs (lr 0 below)
    spec = {"type": "muon", "lr": 0.02, "adam_lr": 0.01, "adam_betas": [0.8, 0.9], "adam_eps": 1e-6,
            "adam_weight_decay": 0.1, "group_overrides": [{"params": ["fc.weight"], "lr": 0.0}]}
    opt = optreg.build_optimizer(spec, model)
    algorithms = {name: g["algorithm"] for g in opt.param_groups for name in g["param_names"]}
    assert algorithms["fc.weight"] == "muon"
    assert {a for n, a in algorithms.items() if n != "fc.weight"} == {"adamw"}
    named = dict(ref_model.named_parameters())
    decayed = [named["head.weight"]]
    undecayed = [named[n] for n in ("embedding.weight", "fc.bias", "norm.weight", "norm.bias", "head.bias")]
    ref = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": 0.1}, {"params": undecayed, "weight_decay": 0.0}],
        lr=0.01, betas=(0.8, 0.9), eps=1e-6,
    )
    x = torch.randint(0, 10, (5,))
    for _ in range(5):
        for m, o in ((model, opt), (ref_model, ref)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
    mine = dict(model.named_parameters())
    for name, q in named.items():
        if name == "fc.weight":
            continue
        torch.testing.assert_close(mine[name], q, rtol=1e-6, atol=1e-7, msg=name)
