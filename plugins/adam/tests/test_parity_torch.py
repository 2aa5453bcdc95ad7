"""adam / adamw equal torch.optim.Adam / AdamW: params and state, 20 steps, two groups, decay on, amsgrad on/off."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import assert_close_rel, groups_of, make_model, run
from optreg_adam import Adam, AdamW

import optreg

STEPS = 20
RTOL = 1e-6  # relative to each tensor's scale; see helpers.assert_close_rel


def _pair(name: str, *, amsgrad: bool, maximize: bool = False, **ours):
    torch_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    our_cls = {"adam": Adam, "adamw": AdamW}[name]
    ref_model, our_model = make_model(), make_model()
    kw = {"betas": (0.85, 0.99), "eps": 1e-7, "amsgrad": amsgrad, "maximize": maximize}
    ref = torch_cls(groups_of(ref_model), foreach=False, **kw)
    opt = our_cls(groups_of(our_model), **kw, **ours)
    return ref_model, ref, our_model, opt


def _compare(ref_model, ref, our_model, opt):
    for (name, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        assert_close_rel(b, a, RTOL, f"param {name}")
    ref_state, our_state = ref.state_dict()["state"], opt.state_dict()["state"]
    assert ref_state.keys() == our_state.keys()
    for i in ref_state:
        assert ref_state[i].keys() == our_state[i].keys(), f"state keys of param {i}"
        for key, value in ref_state[i].items():
            mine = our_state[i][key]
            if key == "step":
                assert float(mine) == float(value) == STEPS
            else:
                assert_close_rel(mine, value, RTOL, f"state[{i}][{key}]")


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("path", [{}, {"fused": True}, {"foreach": True}, {"foreach": False}])
def test_matches_torch(name, amsgrad, path):
    ref_model, ref, our_model, opt = _pair(name, amsgrad=amsgrad, **path)
    run(ref_model, ref, STEPS)
    run(our_model, opt, STEPS)
    _compare(ref_model, ref, our_model, opt)


@pytest.mark.parametrize("path", [{"fused": True}, {"foreach": False}])
def test_maximize_matches_torch(path):
    ref_model, ref, our_model, opt = _pair("adamw", amsgrad=False, maximize=True, **path)
    run(ref_model, ref, STEPS)
    run(our_model, opt, STEPS)
    _compare(ref_model, ref, our_model, opt)


def test_built_from_spec_matches_torch():
    """Through the registry: group overrides give the same groups torch gets by hand."""
    ref_model, our_model = make_model(), make_model()
    ref = torch.optim.AdamW(groups_of(ref_model, wds=(0.05, 0.0)), betas=(0.85, 0.99), eps=1e-7)
    spec = {"type": "adamw", "lr": 1e-2, "betas": [0.85, 0.99], "eps": 1e-7, "weight_decay": 0.05,
            "group_overrides": [{"params": ["*.bias", "1.weight"], "lr": 3e-3}]}
    opt = optreg.build_optimizer(spec, our_model)
    run(ref_model, ref, STEPS)
    run(our_model, opt, STEPS)
    for (name, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        assert_close_rel(b, a, RTOL, f"param {name}")


def test_loads_a_torch_checkpoint():
    """A torch.optim.AdamW state_dict loads into ours and the run continues as torch's would."""
    ref_model, our_model = make_model(), make_model()
    ref = torch.optim.AdamW(groups_of(ref_model), foreach=False)
    run(ref_model, ref, 5)
    our_model.load_state_dict(ref_model.state_dict())
    opt = AdamW(groups_of(our_model))
    buffer = io.BytesIO()
    torch.save(ref.state_dict(), buffer)  # a real checkpoint: loaded state must not alias torch's live tensors
    buffer.seek(0)
    opt.load_state_dict(torch.load(buffer, weights_only=True))
    run(ref_model, ref, 5, start=5)
    run(our_model, opt, 5, start=5)
    for (name, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        assert_close_rel(b, a, RTOL, f"param {name}")


# ---------------------------------------------------------------- complex params

COMPLEX_SHAPES = [(6, 5), (5,), (3, 4, 2)]


def _complex_run(cls, steps=STEPS, **kw):
    """``cls`` on complex params (two groups, the first with weight decay) fed a fixed gradient sequence."""
    g = torch.Generator().manual_seed(7)
    params = [torch.randn(s, dtype=torch.complex64, generator=g) for s in COMPLEX_SHAPES]
    grads = [[torch.randn(s, dtype=torch.complex64, generator=g) * (0.1 + i) for i, s in enumerate(COMPLEX_SHAPES)]
             for _ in range(steps)]
    opt = cls([{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:], "weight_decay": 0.0, "lr": 3e-3}],
              lr=1e-2, **kw)
    for gs in grads:
        for p, gr in zip(params, gs):
            p.grad = gr.clone()
        opt.step()
    return params, opt


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("path", [{}, {"fused": True}, {"foreach": True}, {"foreach": False}])
def test_complex_params_match_torch(name, amsgrad, path):
    """Complex params equal torch's Adam/AdamW, which steps ``view_as_real`` of param, grad and state.

    The fused kernel does not take complex tensors; optreg hands it the real views. Tolerance as the
    real parity above: the paths order their float32 operations differently from torch's loop.
    """
    torch_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    our_cls = {"adam": Adam, "adamw": AdamW}[name]
    kw = {"betas": (0.85, 0.99), "eps": 1e-7, "amsgrad": amsgrad, "maximize": name == "adam"}
    ref_params, ref = _complex_run(torch_cls, foreach=False, **kw)
    our_params, opt = _complex_run(our_cls, **kw, **path)
    for i, (a, b) in enumerate(zip(ref_params, our_params)):
        assert b.dtype == torch.complex64
        assert_close_rel(torch.view_as_real(b), torch.view_as_real(a), RTOL, f"param {i}")
        for key, value in ref.state[a].items():
            mine = opt.state[b][key]
            if key == "step":
                assert float(mine) == float(value) == STEPS
            else:
                assert mine.dtype == value.dtype == torch.complex64, f"state[{i}][{key}] is {mine.dtype}"
                assert_close_rel(torch.view_as_real(mine), torch.view_as_real(value), RTOL, f"state[{i}][{key}]")


def test_complex_checkpoint_moves_between_torch_and_optreg():
    """torch's AdamW checkpoint of complex params loads into optreg's and the run continues as torch's."""
    ref_params, ref = _complex_run(torch.optim.AdamW, steps=5, foreach=False)
    our_params = [p.detach().clone() for p in ref_params]
    opt = AdamW([{"params": our_params[:2], "weight_decay": 0.1},
                 {"params": our_params[2:], "weight_decay": 0.0, "lr": 3e-3}], lr=1e-2)
    buffer = io.BytesIO()
    torch.save(ref.state_dict(), buffer)
    buffer.seek(0)
    opt.load_state_dict(torch.load(buffer, weights_only=True))
    g = torch.Generator().manual_seed(8)
    for _ in range(5):
        for p, q in zip(ref_params, our_params):
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)
            q.grad = p.grad.clone()
        ref.step()
        opt.step()
    for i, (a, b) in enumerate(zip(ref_params, our_params)):
        assert_close_rel(torch.view_as_real(b), torch.view_as_real(a), RTOL, f"param {i}")
