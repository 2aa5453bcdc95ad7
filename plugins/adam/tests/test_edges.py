"""Edge cases the kit does not reach: a skipped *first* step, direct construction errors, LR as a tensor."""

from __future__ import annotations

import optreg_adam.functional as F
import pytest
import torch

import optreg

NAMES = [
    {"type": "adam", "lr": 0.01},
    {"type": "adam", "lr": 0.01, "foreach": True, "amsgrad": True},
    {"type": "adamw", "lr": 0.01, "fused": True},
    {"type": "adamw", "lr": 0.01, "foreach": False},
    {"type": "adamw", "lr": 0.01, "state_dtype": "bfloat16"},
    {"type": "ademamix", "lr": 0.01, "alpha_warmup": 5, "beta3_warmup": 5},
    {"type": "simplified_ademamix", "lr": 0.01, "beta1_warmup": 5, "bias_correction1": True},
    {"type": "adopt", "lr": 0.01},
    {"type": "laprop", "lr": 0.01},
    {"type": "acprop", "lr": 0.01, "momentum_update": True},
    {"type": "madam", "lr": 0.01},
]


def _params():
    torch.manual_seed(0)
    return [torch.randn(4, 3), torch.randn(3)]


@pytest.mark.parametrize("spec", NAMES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items() if k != "lr"))
def test_skipping_the_first_step_changes_nothing(spec):
    """step_factor = 0 before any real step (bias corrections at step 0) leaves params finite and unchanged."""
    skipped, fresh = _params(), _params()
    opt_s = optreg.build_optimizer(spec, skipped)
    opt_f = optreg.build_optimizer(spec, fresh)
    for p in skipped:
        p.grad = torch.full_like(p, float("nan"))
    opt_s.step(step_factor=torch.zeros(()))
    for p, q in zip(skipped, _params()):
        assert torch.equal(p, q)  # a skipped step writes nothing (or writes the old values back): exact
    for _ in range(2):
        grads = [torch.randn_like(p) for p in fresh]
        for p, q, g in zip(skipped, fresh, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt_s.step(step_factor=torch.ones(()))
        opt_f.step()
    # Bit-exact on every machine: step_factor = 1 runs the same tensor ops on the same values as no factor
    # (the step's scalars are multiplied by 1.0 and the gradient passes a torch.where, both exact).
    for p, q in zip(skipped, fresh):
        assert torch.equal(p, q), "a skipped first step changed the run that followed"


@pytest.mark.parametrize("spec", NAMES[4:], ids=lambda s: s["type"])
def test_tensor_lr_equals_float_lr(spec):
    a, b = _params(), _params()
    opt_a = optreg.build_optimizer(spec, a)
    opt_b = optreg.build_optimizer(spec, b)
    for group in opt_b.param_groups:
        group["lr"] = torch.tensor(group["lr"], dtype=torch.float64)
    for _ in range(3):
        for p, q in zip(a, b):
            p.grad = torch.ones_like(p)
            q.grad = torch.ones_like(q)
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        ("Adam", {"lr": -1.0}, "lr"),
        ("AdamW", {"betas": (0.9, 1.0)}, "beta"),
        ("AdamW", {"eps": float("nan")}, "eps"),
        ("AdamW", {"foreach": True, "fused": True}, "not both"),
        ("AdamW", {"state_dtype": "float16"}, "state_dtype"),
    ],
)
def test_direct_construction_rejects_bad_values(cls, kwargs, match):
    import optreg_adam

    with pytest.raises(ValueError, match=match):
        getattr(optreg_adam, cls)([torch.zeros(2, requires_grad=True)], **kwargs)


def test_family_direct_construction_rejects_bad_values():
    from optreg_adam import optim as A

    with pytest.raises(ValueError, match="beta"):
        A.AdEMAMix([torch.zeros(2)], betas=(0.9, 0.99, 1.5))
    with pytest.raises(ValueError, match="scale_log2"):
        A.Madam([torch.zeros(2)], scale_log2=3)
    with pytest.raises(ValueError, match="weight_decay"):
        A.LaProp([torch.zeros(2)], weight_decay=-1.0)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        ("AdamW", {"lr": -1.0}, "lr must be >= 0, got -1.0"),
        ("Adam", {"eps": -1e-8}, "eps must be >= 0, got -1e-08"),
        ("ADOPT", {"eps": 0.0}, "eps must be > 0, got 0.0"),
        ("ADOPT", {"clip_exponent": 0.0}, "clip_exponent must be > 0, got 0.0"),
        ("AdEMAMix", {"alpha_warmup": 0}, "alpha_warmup must be in [1, 1125899906842624], got 0"),
        ("AdEMAMix", {"betas": (0.9, 0.999)}, "betas must hold 3 numbers, got 2"),
        ("SimplifiedAdEMAMix", {"min_beta1": 1.0}, "min_beta1 must be in [0, 1), got 1.0"),
        ("Madam", {"scale_log2": 122}, "scale_log2 must be in [0, 120], got 122"),
        ("Madam", {"weight_decay": -0.5}, "weight_decay must be >= 0, got -0.5"),
    ],
)
def test_direct_construction_speaks_the_specs_words(cls, kwargs, message):
    """A Python user gets the bound and the words a spec file's user gets (optreg.optim.check_number)."""
    import re

    from optreg_adam import optim as A

    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        getattr(A, cls)([torch.zeros(2)], **kwargs)


def test_the_path_of_a_group_follows_the_one_policy():
    """Explicit fused/foreach win; unset: torch's fused kernel where it applies (at any size: it is the faster
    path from one element on), else the compiled step when asked, else optreg.optim.use_foreach (the
    multi-tensor path only when every param is on an accelerator; ``meta`` tensors stand in for one here)."""
    from optreg_adam import AdamW

    small, big = [torch.zeros(4, 3)], [torch.zeros(1 << 16)]
    device = [torch.empty(4, 3, device="meta")]
    opt = AdamW([torch.zeros(2)])
    group = dict(opt.param_groups[0])
    assert opt.impl_for(group, small, small) == "fused"
    assert opt.impl_for(group, big, big) == "fused"
    assert opt.impl_for({**group, "fused": False}, small, small) == "single"
    assert opt.impl_for(group, device, device) == "foreach"
    assert opt.impl_for({**group, "compile": True}, device, device) == "compiled"
    assert opt.impl_for({**group, "foreach": False}, device, device) == "single"
    assert opt.impl_for({**group, "fused": False}, big, big) == "single"
    assert opt.impl_for({**group, "foreach": True}, small, small) == "foreach"
    assert opt.impl_for({**group, "fused": True}, small, small) == "fused"
    assert opt.impl_for({**group, "state_dtype": "bfloat16"}, device, device) == "single"
    # bfloat16 state on CPU: optreg's C kernel where it builds (see test_native.py), unless fused = false
    bf16 = {**group, "state_dtype": "bfloat16"}
    assert opt.impl_for(bf16, small, small) == ("native" if F.native_available() else "single")
    assert opt.impl_for({**bf16, "fused": False}, small, small) == "single"
    assert opt.impl_for({**bf16, "fused": False, "compile": True}, small, small) == "compiled"


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32"])
def test_float64_params_with_low_precision_state_stay_float64(state_dtype):
    """The moments are in the dtype the user asked for; the float64 param is still updated in float64.

    A step of 1e-12 from 1 + 2**-40 is lost entirely in float32 arithmetic (it rounds to 1.0).
    """
    from optreg_adam import AdamW

    start = 1.0 + 2.0**-40
    p = torch.full((4,), start, dtype=torch.float64)
    opt = AdamW([p], lr=1e-12, weight_decay=0.0, state_dtype=state_dtype)
    p.grad = torch.ones_like(p)
    opt.step()
    # first Adam step: m_hat = g, v_hat = g**2, so the update is lr * g / (|g| + eps); bf16 moments err by
    # up to 2**-8 relative (stochastic rounding), i.e. 4e-15 of this step
    expected = start - 1e-12 / (1.0 + 1e-8)
    assert p.dtype == torch.float64
    assert (p - expected).abs().max() < 1e-14, f"param {p[0].item()!r}, expected {expected!r}"


@pytest.mark.parametrize("name", ["laprop", "simplified_ademamix"])
def test_scalar_state_under_bf16_params_survives_a_checkpoint(name):
    """LaProp's LR average and Simplified AdEMAMix's momentum sum are fp32 under bf16 params, also after a load
    (torch's load_state_dict would round them to the param's bf16). Both runs take the same ops: bit-exact."""
    import io

    spec = {"type": name, "lr": 0.01, **({"bias_correction1": True} if name == "simplified_ademamix" else {})}
    key = {"laprop": "exp_avg_lr", "simplified_ademamix": "num_sum"}[name]
    params = [p.to(torch.bfloat16) for p in _params()]
    opt = optreg.build_optimizer(spec, params)
    for step in range(3):
        opt.param_groups[0]["lr"] = 0.01 * (1 + step)  # an LR schedule: LaProp's average is not a round number
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed = [p.clone() for p in params]
    opt_r = optreg.build_optimizer(spec, resumed)
    opt_r.load_state_dict(torch.load(buffer, weights_only=True))
    for p, q in zip(params, resumed):
        assert opt_r.state[q][key].dtype == torch.float32
        assert torch.equal(opt_r.state[q][key], opt.state[p][key]), f"{key} was rounded on load"
    for _ in range(2):
        for p, q in zip(params, resumed):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt.step()
        opt_r.step()
    for p, q in zip(params, resumed):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad", ["nan", "inf"])
@pytest.mark.parametrize("at_step", [0, 2])
@pytest.mark.parametrize("spec", [*NAMES, {"type": "adopt", "lr": 0.01, "clip": False}],
                         ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items() if k != "lr"))
def test_a_non_finite_gradient_is_never_silently_frozen(spec, bad, at_step):
    """One NaN/inf gradient coordinate makes that param coordinate NaN (as torch.optim.Adam does); the others
    stay finite. Never a finite param that stops moving: e.g. ADOPT's clip turned an inf gradient into a
    finite step and left v = inf, after which the coordinate never moved again."""
    params = _params()
    opt = optreg.build_optimizer(spec, params)
    g = torch.Generator().manual_seed(1)
    for step in range(at_step + 3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        if step == at_step:
            params[0].grad[0, 0] = float(bad)
        opt.step()
    assert not torch.isfinite(params[0][0, 0]), f"the coordinate that got a {bad} gradient is finite (frozen)"
    rest = torch.cat([params[0].flatten()[1:], params[1]])
    assert torch.isfinite(rest).all(), "a non-finite gradient leaked into other coordinates"
