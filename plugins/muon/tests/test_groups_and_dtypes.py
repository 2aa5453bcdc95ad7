"""Groups added later (routed as the constructor routes), complex refusal, float64 and bf16 state precision."""

import copy
import math

import pytest
import torch
from optreg_muon import Dion, Muon, NorMuon
from optreg_muon.functional.newton_schulz import newton_schulz, resolve_coefficients
from torch import nn

ADAM = {"adam_lr": 0.123, "adam_betas": (0.8, 0.9), "adam_eps": 1e-6, "adam_weight_decay": 0.01}


def _comparable(groups: list[dict]) -> list[dict]:
    """Param groups with the tensors replaced by their ids (so two optimizers' groups compare)."""
    return [{**g, "params": [id(p) for p in g["params"]]} for g in groups]


@pytest.mark.parametrize("cls", [Muon, NorMuon, Dion])
@pytest.mark.parametrize("named", [False, True], ids=["tensors", "named"])
def test_add_param_group_routes_as_the_constructor(cls: type, named: bool) -> None:
    """A weight and a bias added later land in the matrix and the non-matrix group the constructor would make."""
    w1, w2, b2 = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(5, 6)), nn.Parameter(torch.randn(5))
    first, added = [("w1", w1)], [("w2", w2), ("b2", b2)]
    if not named:
        first, added = [p for _, p in first], [p for _, p in added]
    later = cls(first, **ADAM)
    later.add_param_group({"params": added, "weight_decay": 0.5})
    at_once = cls([{"params": first}, {"params": added, "weight_decay": 0.5}], **ADAM)
    assert _comparable(later.param_groups) == _comparable(at_once.param_groups)
    matrix, non_matrix = later.param_groups[1:]
    assert matrix["algorithm"] == cls.ALGORITHM and matrix["params"] == [w2]
    assert non_matrix["algorithm"] == "adamw" and non_matrix["params"] == [b2]
    assert (non_matrix["lr"], non_matrix["betas"], non_matrix["eps"]) == (0.123, (0.8, 0.9), 1e-6)
    assert matrix["weight_decay"] == non_matrix["weight_decay"] == 0.5  # the group's own options win
    if named:
        assert matrix["param_names"] == ["w2"] and non_matrix["param_names"] == ["b2"]
    for p in (w1, w2, b2):
        p.grad = torch.randn_like(p)
    later.step()


def test_param_names_beside_tensors_follow_the_split() -> None:
    w, b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4))
    opt = Muon([{"params": [b, w], "param_names": ["bias", "weight"]}])
    assert [(g["algorithm"], g["param_names"]) for g in opt.param_groups] == [("muon", ["weight"]), ("adamw", ["bias"])]


def test_a_group_naming_its_algorithm_is_kept_with_the_non_matrix_defaults() -> None:
    """An explicit non-matrix group takes the adam_* options it leaves out (not the matrix update's lr/eps)."""
    w, b, c = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(3))
    opt = Muon([w], lr=0.02, eps=1e-7, non_matrix_algorithm="adamw", **ADAM)
    opt.add_param_group({"params": [b], "algorithm": "lion"})
    opt.add_param_group({"params": [c], "algorithm": "adamw", "lr": 0.5})
    lion, adamw = opt.param_groups[1:]
    assert lion["algorithm"] == "lion" and lion["lr"] == 0.123 and lion["betas"] == (0.8, 0.9)
    assert adamw["lr"] == 0.5 and adamw["eps"] == 1e-6 and adamw["weight_decay"] == 0.01


@pytest.mark.parametrize(
    ("group", "error", "match"),
    [
        ({"params": [nn.Parameter(torch.randn(4))], "algorithm": "muon"}, ValueError, "belongs in a group"),
        ({"params": [nn.Parameter(torch.randn(4, 4))], "algorithm": "sgd"}, ValueError, "take algorithm"),
        ({"params": [nn.Parameter(torch.randn(4, 4))], "ns_dtype": "float16"}, ValueError, "ns_dtype must be one of"),
        ({"params": [nn.Parameter(torch.randn(4, 4))], "ns_backend": "cuda"}, ValueError, "ns_backend must be one of"),
        ({"params": [nn.Parameter(torch.randn(4, 4))], "ns_dtype": "float64", "ns_backend": "triton"}, ValueError,
         "Triton"),
        ({"params": [nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4, dtype=torch.complex64))]},
         TypeError, "complex"),
        ({"params": {nn.Parameter(torch.randn(4, 4))}}, TypeError, "not a set"),
    ],
)
def test_bad_groups_are_refused_before_anything_is_added(group: dict, error: type, match: str) -> None:
    opt = Muon([nn.Parameter(torch.randn(3, 3))])
    with pytest.raises(error, match=match):
        opt.add_param_group(group)
    assert len(opt.param_groups) == 1, "a refused group was partly added"


@pytest.mark.parametrize("cls", [Muon, NorMuon, Dion])
def test_complex_params_are_refused_at_construction(cls: type) -> None:
    for shape in ((4, 3), (4,)):  # matrix and non-matrix: the whole optimizer refuses complex
        z = nn.Parameter(torch.randn(*shape, dtype=torch.complex64))
        with pytest.raises(TypeError, match=f"{cls.__name__} does not support complex parameters"):
            cls([nn.Parameter(torch.randn(3, 3)), z])


def test_normuon_bf16_second_moment_survives_a_checkpoint() -> None:
    """bf16 params keep a float32 second moment; load_state_dict must not round it to bf16 (the step then failed)."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(6, 4, dtype=torch.bfloat16))
    opt = NorMuon([w])
    w.grad = torch.randn(6, 4, dtype=torch.bfloat16)
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    resumed_w = nn.Parameter(w.detach().clone())
    resumed = NorMuon([resumed_w])
    resumed.load_state_dict(saved)
    assert resumed.state[resumed_w]["second_moment"].dtype == torch.float32
    assert torch.equal(resumed.state[resumed_w]["second_moment"], opt.state[w]["second_moment"])
    grad = torch.randn(6, 4, dtype=torch.bfloat16)
    w.grad, resumed_w.grad = grad.clone(), grad.clone()
    opt.step()
    resumed.step()
    assert torch.equal(w, resumed_w)  # the same ops on the same values


def test_float64_unequal_blocks_scale_by_float64_ratios() -> None:
    """Per-block LR ratios (unequal split_sizes) stay float64 with float64 params: sqrt(2) is not rounded to float32.

    Exact: the reference runs the very same float64 Newton-Schulz call per block and the same products.
    """
    grad = torch.randn(12, 4, dtype=torch.float64)
    qkv = nn.Parameter(torch.zeros(12, 4, dtype=torch.float64))
    opt = Muon([qkv], lr=1.0, momentum=0.0, nesterov=False, split_sizes=(8, 4), ns_dtype="float64")
    qkv.grad = grad
    opt.step()
    coefficients = resolve_coefficients("muon", 5)
    top = newton_schulz(grad[:8], coefficients, dtype=torch.float64) * math.sqrt(8 / 4)
    bottom = newton_schulz(grad[8:], coefficients, dtype=torch.float64)  # square: ratio 1
    torch.testing.assert_close(qkv.detach(), -torch.cat([top, bottom]), rtol=0, atol=0)


@pytest.mark.parametrize("preconditioning", ["frobenius", "spectral", "aol", "schatten"])
def test_float64_newton_schulz_reaches_float64_accuracy(preconditioning: str) -> None:
    """ns_dtype float64: the iteration and its preconditioning keep float64, so Polar Express converges to the
    polar factor within 1e-12 (measured 2e-15); a float32 rounding anywhere would leave about 1e-7."""
    from optreg_muon.functional.newton_schulz import polar_factor

    g = torch.Generator().manual_seed(0)
    G = torch.randn(24, 16, generator=g, dtype=torch.float64)
    X = newton_schulz(G, resolve_coefficients("polar_express", 10), preconditioning=preconditioning,
                      dtype=torch.float64)
    assert X.dtype == torch.float64
    if preconditioning == "aol":  # AOL rescales the rows of the wide orientation: the polar factor of D G^T
        A = G.T @ G
        expected = polar_factor(A.abs().sum(dim=-1).rsqrt().unsqueeze(-1) * G.T).T
    else:
        expected = polar_factor(G)
    torch.testing.assert_close(X, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [Muon, NorMuon, Dion])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_shows_in_the_param_it_reaches(cls: type, bad: float) -> None:
    """Nothing is frozen: the matrix with a NaN/inf gradient entry becomes NaN, a same-shaped one (batched with
    it) stays finite, and the bias gets NaN in that entry only (docs/muon.md, "Non-finite gradients")."""
    torch.manual_seed(0)
    hit, other, bias = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(4))
    opt = cls([hit, other, bias])
    for _ in range(2):
        for p in (hit, other, bias):
            p.grad = torch.randn_like(p)
        opt.step()
    for p in (hit, other, bias):
        p.grad = torch.randn_like(p)
    hit.grad[0, 0] = bad
    bias.grad[0] = bad
    opt.step()
    assert hit.isnan().all()
    assert torch.isfinite(other).all()
    assert bias.isnan().tolist() == [True, False, False, False]
    assert not torch.isfinite(opt.state[bias]["exp_avg"][0]) and torch.isfinite(opt.state[bias]["exp_avg"][1:]).all()
    if cls is NorMuon:
        assert opt.state[hit]["second_moment"].isnan().all()
    if cls is Dion:
        assert opt.state[hit]["momentum_buffer"].isnan().all() and torch.isfinite(opt.state[hit]["Q"]).all()
