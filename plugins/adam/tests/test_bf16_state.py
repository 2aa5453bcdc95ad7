"""AdamW with bfloat16 state: unbiased stochastic rounding and the stated error bound.

Stated bound (docs/adam.md): every stored moment is an unbiased estimate of the fp32 recurrence
fed the same gradients; its relative error has standard deviation at most
``2**-8 / sqrt(1 - beta**2)``: 0.9% for exp_avg (beta1 = 0.9) and 8.7% for exp_avg_sq
(beta2 = 0.999), so about 4% on sqrt(v). Over 200 steps of a small model the run stays within
1% of the fp32 run's loss and 2% (relative L2) of its parameters.
"""

from __future__ import annotations

import io
import math
import pickle

import torch
from helpers import groups_of, loss_of, make_model
from optreg_adam import AdamW
from optreg_adam.functional import adamw_update_, round_to_bf16_stochastic


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    down = (x.view(torch.int32) & -65536).view(torch.float32)  # truncation toward 0
    up = ((x.view(torch.int32) & -65536) + 65536).view(torch.float32)
    return down, up


def test_stochastic_rounding_is_unbiased_and_within_one_ulp():
    torch.manual_seed(0)
    x = torch.randn(20000) * torch.logspace(-6, 6, 20000)
    down, up = _neighbours(x)
    draws = torch.stack([round_to_bf16_stochastic(x, torch.tensor(seed, dtype=torch.int32)).float()
                         for seed in range(256)])
    assert ((draws == down) | (draws == up)).all(), "a draw is not one of the two bf16 neighbours"
    frac = (x - down) / (up - down)  # the probability of rounding up
    p_up = (draws == up).float().mean(0)
    # 256 Bernoulli draws: std of p_up <= 1/32; the mean over 20000 elements is far tighter
    assert (p_up - frac).abs().mean() < 0.03
    assert abs(float((p_up - frac).mean())) < 2e-3, "rounding is biased"


def test_stochastic_rounding_is_deterministic_in_the_seed():
    x = torch.randn(1000)
    a = round_to_bf16_stochastic(x, torch.tensor(5, dtype=torch.int32))
    b = round_to_bf16_stochastic(x, torch.tensor(5, dtype=torch.int32))
    c = round_to_bf16_stochastic(x, torch.tensor(6, dtype=torch.int32))
    assert torch.equal(a, b) and not torch.equal(a, c)  # integer hashing: the same bits on every machine


def _moments(dtype, sr, n=4096, steps=1100):
    torch.manual_seed(0)
    p, m, v, step = torch.zeros(n), torch.zeros(n, dtype=dtype), torch.zeros(n, dtype=dtype), torch.zeros(())
    for t in range(steps):
        g = torch.randn(n) * (1.0 if t < 100 else 0.01)  # large gradients, then small: v must decay
        adamw_update_(p, g, m, v, step, lr=0.0, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                      stochastic_rounding=sr)
    return m.float(), v.float()


def test_second_moment_tracks_fp32_where_round_to_nearest_stalls():
    m32, v32 = _moments(torch.float32, None)
    m_sr, v_sr = _moments(torch.bfloat16, True)
    _, v_rn = _moments(torch.bfloat16, False)
    rel = (v_sr - v32) / v32
    bound = 2**-8 / math.sqrt(1 - 0.999**2)  # 0.087
    assert abs(float(rel.mean())) < 0.01, "stochastic rounding left a bias in v"
    assert float(rel.abs().mean()) < bound, f"mean |relative error| of v {float(rel.abs().mean()):.3f} > {bound:.3f}"
    rel_m = (m_sr - m32).abs().mean() / m32.abs().mean()
    assert float(rel_m) < 2**-8 / math.sqrt(1 - 0.9**2)
    # round-to-nearest cannot decay v by 0.1% per step (half a bf16 ulp is 0.2%): it stays ~3x too large
    assert float(((v_rn - v32) / v32).mean()) > 1.0


def _train(state_dtype, steps=200):
    model = make_model(3)
    opt = AdamW(groups_of(model, lrs=(1e-2, 1e-2), wds=(0.01, 0.0)), state_dtype=state_dtype)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model, step % 50)
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), float(loss.detach()), opt


def test_200_steps_stay_close_to_fp32():
    ref, ref_loss, _ = _train(None)
    got, loss, opt = _train("bfloat16")
    for state in opt.state.values():
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16
    start = torch.cat([p.detach().flatten() for p in make_model(3).parameters()])
    assert float((ref - start).norm() / ref.norm()) > 0.3, "the run must move the params for the check to mean much"
    assert abs(loss - ref_loss) <= 0.01 * ref_loss, f"loss {loss:.5f} vs fp32 {ref_loss:.5f}"
    assert float((got - ref).norm() / ref.norm()) <= 0.02


def _stepped(state_dtype, dtype=torch.float32, steps=3):
    model = make_model(4, dtype=dtype)
    opt = AdamW(groups_of(model), state_dtype=state_dtype)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_of(model, step).backward()
        opt.step()
    return model, opt


def _continue(model, opt, start, steps=3):
    for step in range(start, start + steps):
        opt.zero_grad(set_to_none=True)
        loss_of(model, step).backward()
        opt.step()


def test_a_pickled_optimizer_keeps_bf16_state_through_load_state_dict():
    """Keeping moments in bf16 across ``load_state_dict`` is a method of the class, so copies keep it too
    (a hook registered in ``__init__`` is not pickled). Bit-exact: both sides run the same ops."""
    model, opt = _stepped("bfloat16")
    model_copy, opt_copy = pickle.loads(pickle.dumps((model, opt)))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # a real checkpoint (torch's load aliases the tensors it is given)
    buffer.seek(0)
    opt_copy.load_state_dict(torch.load(buffer, weights_only=True))
    for state in opt_copy.state.values():
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16
    _continue(model, opt, 3)
    _continue(model_copy, opt_copy, 3)
    for p, q in zip(model.parameters(), model_copy.parameters()):
        assert torch.equal(p, q)


def test_fp32_state_under_bf16_params_loads_exactly():
    """torch's load_state_dict casts state to the param dtype (bf16 here); the fp32 moments come back unrounded."""
    model, opt = _stepped("float32", dtype=torch.bfloat16)
    saved = opt.state_dict()
    fresh = AdamW(groups_of(model), state_dtype="float32")
    fresh.load_state_dict(saved)
    for i, state in saved["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            loaded = fresh.state_dict()["state"][i][key]
            assert loaded.dtype == torch.float32
            assert torch.equal(loaded, state[key]), f"state[{i}][{key}] was rounded on load"


def test_complex_params_keep_bf16_moments_as_their_real_view():
    """No complex bf16 exists: a complex param's bf16 moments have the real view's shape, also after loading
    a checkpoint made without state_dtype (complex moments)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, dtype=torch.complex64, generator=g)
    plain = AdamW([z.clone()])
    bf16 = AdamW([z.clone()], state_dtype="bfloat16")
    for opt in (plain, bf16):
        opt.param_groups[0]["params"][0].grad = torch.randn(4, 3, dtype=torch.complex64, generator=g)
        opt.step()
    state = next(iter(bf16.state.values()))
    assert state["exp_avg"].dtype == torch.bfloat16 and state["exp_avg"].shape == (4, 3, 2)
    bf16.load_state_dict(plain.state_dict())
    state = next(iter(bf16.state.values()))
    expected = torch.view_as_real(next(iter(plain.state.values()))["exp_avg"]).to(torch.bfloat16)
    assert state["exp_avg"].dtype == torch.bfloat16 and torch.equal(state["exp_avg"], expected)


def test_a_load_pre_hook_replacement_is_what_is_kept_and_post_hooks_see_it():
    """The fp32 moments under bf16 params are restored from the dict torch loads (what the user's pre-hook
    returned), before the user's post-hooks run; nothing of the fix-up stays registered, over repeated loads."""
    model, opt = _stepped("float32", dtype=torch.bfloat16)
    saved = opt.state_dict()
    replacement = {**saved, "state": {i: {**s, "exp_avg": s["exp_avg"] * 3.0} for i, s in saved["state"].items()}}
    fresh = AdamW(groups_of(model), state_dtype="float32")
    fresh.register_load_state_dict_pre_hook(lambda optimizer, state_dict: replacement)
    seen: list[set[torch.dtype]] = []
    fresh.register_load_state_dict_post_hook(
        lambda optimizer: seen.append({s["exp_avg"].dtype for s in optimizer.state.values()}))
    for _ in range(2):
        fresh.load_state_dict(saved)
    assert seen == [{torch.float32}] * 2
    assert len(fresh._optimizer_load_state_dict_pre_hooks) == 1
    for i, state in replacement["state"].items():
        assert torch.equal(fresh.state_dict()["state"][i]["exp_avg"], state["exp_avg"])
