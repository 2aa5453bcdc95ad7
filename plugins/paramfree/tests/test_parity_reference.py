"""Parity with the authors' packages: prodigy vs prodigyopt, dadapt_* vs dadaptation (50 steps, fp32)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

import optreg
from optreg.testing.parity import assert_histories_close, batches, small_model, train

prodigyopt = pytest.importorskip("prodigyopt", reason="parity needs the test extra: optreg-paramfree[test]")
dadaptation = pytest.importorskip("dadaptation", reason="parity needs the test extra")

# (our spec, reference constructor, reference kwargs)
CASES = [
    ({"type": "prodigy"}, "prodigy", {}),
    (
        {"type": "prodigy", "weight_decay": 0.1, "use_bias_correction": True, "d_coef": 2.0, "slice_p": 3,
         "growth_rate": 1.5},
        "prodigy",
        {"weight_decay": 0.1, "use_bias_correction": True, "d_coef": 2.0, "slice_p": 3, "growth_rate": 1.5},
    ),
    (
        {"type": "prodigy", "betas": [0.0, 0.99], "beta3": 0.9, "weight_decay": 0.01, "decouple": False,
         "safeguard_warmup": True, "d0": 1e-4},
        "prodigy",
        {"betas": (0.0, 0.99), "beta3": 0.9, "weight_decay": 0.01, "decouple": False, "safeguard_warmup": True,
         "d0": 1e-4},
    ),
    ({"type": "dadapt_adamw"}, "dadapt_adam", {"decouple": True}),
    (
        {"type": "dadapt_adamw", "weight_decay": 0.01, "decouple": False, "use_bias_correction": True,
         "growth_rate": 1.1},
        "dadapt_adam",
        {"weight_decay": 0.01, "decouple": False, "use_bias_correction": True, "growth_rate": 1.1},
    ),
    ({"type": "dadapt_adamw", "weight_decay": 0.1, "betas": [0.8, 0.99]}, "dadapt_adam",
     {"weight_decay": 0.1, "decouple": True, "betas": (0.8, 0.99)}),
    ({"type": "dadapt_sgd"}, "dadapt_sgd", {}),
    ({"type": "dadapt_sgd", "momentum": 0.9, "weight_decay": 1e-3, "growth_rate": 1.5}, "dadapt_sgd",
     {"momentum": 0.9, "weight_decay": 1e-3, "growth_rate": 1.5}),
    ({"type": "dadapt_lion"}, "dadapt_lion", {}),
    ({"type": "dadapt_lion", "weight_decay": 0.01, "betas": [0.95, 0.98]}, "dadapt_lion",
     {"weight_decay": 0.01, "betas": (0.95, 0.98)}),
]


def _reference(name: str, params, kwargs):
    return {
        "prodigy": prodigyopt.Prodigy,
        "dadapt_adam": dadaptation.DAdaptAdam,
        "dadapt_sgd": dadaptation.DAdaptSGD,
        "dadapt_lion": dadaptation.DAdaptLion,
    }[name](params, **kwargs)


def _run_both(spec, ref_name, ref_kwargs, *, lr_lambda=None):
    data = batches()
    ours_model, ref_model = small_model(), small_model()
    # torch's semantics, as the reference: plain tensors, every one decayed (optreg's default
    # no_decay would leave the 1-D ones undecayed)
    ours = optreg.build_optimizer({**spec, "no_decay": []}, list(ours_model.parameters()))
    ours_d: list[float] = []
    ref_d: list[float] = []
    with contextlib.redirect_stdout(io.StringIO()):  # the references print their settings
        ref = _reference(ref_name, ref_model.parameters(), ref_kwargs)
        sched = None if lr_lambda is None else torch.optim.lr_scheduler.LambdaLR(ref, lr_lambda)
        ref_hist = train(
            ref_model, ref, data, scheduler=sched, on_step=lambda i: ref_d.append(ref.param_groups[0]["d"])
        )
    sched = None if lr_lambda is None else torch.optim.lr_scheduler.LambdaLR(ours, lr_lambda)
    ours_hist = train(ours_model, ours, data, scheduler=sched, on_step=lambda i: ours_d.append(ours.d))
    return ours_hist, ref_hist, ours_d, ref_d


def _assert_d_close(ours_d: list[float], ref_d: list[float]) -> None:
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(as_tensor(ours_d), as_tensor(ref_d), rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    ("spec", "ref_name", "ref_kwargs"), CASES, ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)]
)
def test_matches_reference_over_50_steps(spec, ref_name, ref_kwargs):
    ours_hist, ref_hist, ours_d, ref_d = _run_both(spec, ref_name, ref_kwargs)
    assert_histories_close(ours_hist, ref_hist, rtol=1e-4, atol=1e-5)
    _assert_d_close(ours_d, ref_d)
    assert ours_d[-1] > 10 * spec.get("d0", 1e-6), "d never grew: the comparison would not exercise the estimator"


@pytest.mark.parametrize("ref_name", ["prodigy", "dadapt_adam"])
def test_schedule_multiplies_the_step_size_as_in_the_reference(ref_name):
    """A torch LambdaLR scales d's step size exactly as it does in the reference (single group)."""
    spec = {"type": "prodigy"} if ref_name == "prodigy" else {"type": "dadapt_adamw"}
    kwargs = {} if ref_name == "prodigy" else {"decouple": True}

    def warmup_then_decay(step: int) -> float:
        return min(1.0, (step + 1) / 10) * 0.97**step

    ours_hist, ref_hist, ours_d, ref_d = _run_both(spec, ref_name, kwargs, lr_lambda=warmup_then_decay)
    assert_histories_close(ours_hist, ref_hist, rtol=1e-4, atol=1e-5)
    _assert_d_close(ours_d, ref_d)



@pytest.mark.parametrize(
    ("spec", "ref_kwargs"),
    [
        ({"type": "dog"}, {}),
        ({"type": "dog", "weight_decay": 1e-3, "init_step_value": 1e-4}, {"weight_decay": 1e-3, "reps_rel": 1e-4}),
        ({"type": "dog", "init_step": "learning_rate", "init_step_value": 0.05}, {"init_eta": 0.05}),
    ],
    ids=["default", "weight_decay", "init_eta"],
)
def test_dog_matches_the_authors_package(spec, ref_kwargs):
    """The DoG authors' `dog-optimizer` package (one group: their scope is the param group)."""
    dog = pytest.importorskip("dog", reason="parity needs the test extra (dog-optimizer)")
    data = batches()
    ours_model, ref_model = small_model(), small_model()
    # torch's semantics, as the reference: plain tensors, every one decayed (optreg's default
    # no_decay would leave the 1-D ones undecayed)
    ours = optreg.build_optimizer({**spec, "no_decay": []}, list(ours_model.parameters()))
    reference = dog.DoG(ref_model.parameters(), **ref_kwargs)
    assert_histories_close(train(ours_model, ours, data), train(ref_model, reference, data), rtol=1e-4, atol=1e-6)
    assert ours.eta == pytest.approx(float(reference.param_groups[0]["eta"][0]), rel=1e-4)
