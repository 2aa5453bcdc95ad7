"""Parity with the authors' `schedulefree` package over 50 steps: params (y) and eval params (x)."""

from __future__ import annotations

import pytest
import torch

import optreg
from optreg.testing.parity import assert_histories_close, batches, small_model, train

schedulefree = pytest.importorskip("schedulefree", reason="parity needs the test extra: optreg-schedulefree[test]")

CASES = [
    ({"type": "schedule_free_adamw"}, lambda ps: schedulefree.AdamWScheduleFree(ps, foreach=False)),
    (
        {"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.1, "warmup_steps": 10, "r": 0.5,
         "weight_lr_power": 1.0, "betas": [0.95, 0.99], "foreach": True},
        lambda ps: schedulefree.AdamWScheduleFree(
            ps, lr=0.01, weight_decay=0.1, warmup_steps=10, r=0.5, weight_lr_power=1.0, betas=(0.95, 0.99)
        ),
    ),
    (
        {"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.1, "weight_decay_at_y": False},
        lambda ps: schedulefree.AdamWScheduleFreeReference(ps, lr=0.01, weight_decay=0.1, decay_at_z=True),
    ),
    ({"type": "schedule_free_sgd", "lr": 0.5}, lambda ps: schedulefree.SGDScheduleFree(ps, lr=0.5, foreach=False)),
    (
        {"type": "schedule_free_sgd", "lr": 0.5, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 5,
         "foreach": True},
        lambda ps: schedulefree.SGDScheduleFree(ps, lr=0.5, momentum=0.8, weight_decay=0.01, warmup_steps=5),
    ),
    ({"type": "schedule_free_radam", "lr": 0.01}, lambda ps: schedulefree.RAdamScheduleFree(ps, lr=0.01)),
    (
        {"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False, "weight_decay": 0.01},
        lambda ps: schedulefree.RAdamScheduleFree(ps, lr=0.01, silent_sgd_phase=False, weight_decay=0.01),
    ),
    (
        {"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.5}},
        lambda ps: schedulefree.ScheduleFreeWrapper(torch.optim.SGD(ps, lr=0.5), momentum=0.9),
    ),
    (
        {"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.5, "weight_decay": 0.01}, "momentum": 0.95,
         "weight_decay_at_y": 0.1, "r": 1.0},
        lambda ps: schedulefree.ScheduleFreeWrapper(
            torch.optim.SGD(ps, lr=0.5, weight_decay=0.01), momentum=0.95, weight_decay_at_y=0.1, r=1.0
        ),
    ),
]


@pytest.mark.parametrize(("spec", "make_reference"), CASES, ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_params_and_eval_params_match_the_reference(spec, make_reference):
    data = batches()
    ours_model, ref_model = small_model(), small_model()
    # torch's semantics, as the reference: plain tensors, every one decayed (optreg's default
    # no_decay would leave the 1-D ones undecayed)
    ours = optreg.build_optimizer({**spec, "no_decay": []}, list(ours_model.parameters()))
    reference = make_reference(ref_model.parameters())
    reference.train()  # the reference starts in eval mode; ours starts in train mode
    ours_hist = train(ours_model, ours, data)
    ref_hist = train(ref_model, reference, data)
    assert_histories_close(ours_hist, ref_hist, rtol=1e-5, atol=1e-6)
    moved = max(float((a - b.detach()).abs().max()) for a, b in zip(ours_hist[-1], small_model().parameters()))
    assert moved > 1e-2, "the run barely moved: the comparison would prove little"
    ours.eval()
    reference.eval()
    with torch.no_grad():
        assert_histories_close([list(ours_model.parameters())], [list(ref_model.parameters())], rtol=1e-5, atol=1e-6)
        assert any(not torch.allclose(x, y) for x, y in zip(ours_model.parameters(), ours_hist[-1])), "x == y"
