"""optreg.testing.distributed in one process: the cases run, report refusals, and compare."""

from __future__ import annotations

import math

from optreg.testing.distributed import MODELS, STEPS, max_difference, run_cases


def test_a_case_trains_every_model_and_returns_its_parameters():
    cases = {name: {"optimizer": {"type": "sgd", "lr": 0.1}, "parallelism": {"type": "single"}, "model": name}
             for name in MODELS}
    results = run_cases(cases)
    for name, model in MODELS.items():
        got = results[name]
        assert "error" not in got, got
        assert set(got["params"]) == {n for n, _ in model().named_parameters()}
        assert got["skipped"] == []
    again = run_cases(cases)
    assert again == results, "a case is deterministic (seeded model and batches)"


def test_a_case_that_fails_reports_its_error_and_the_others_still_run():
    results = run_cases({
        "bad": {"optimizer": {"type": "sgd", "lr": -1.0}, "parallelism": {"type": "single"}},
        "good": {"optimizer": {"type": "sgd"}, "parallelism": {"type": "single"}, "stop": STEPS // 2},
    })
    assert results["bad"]["error"].startswith("SpecError") and "lr" in results["bad"]["error"]
    assert "params" in results["good"]


def test_max_difference():
    assert max_difference([[1.0, 2.0]], [[1.0, 2.5]]) == 0.5
    assert max_difference([1.0, math.nan], [1.0, math.nan]) == 0.0, "NaN where both are NaN is agreement"
    assert math.isnan(max_difference([1.0, math.nan], [1.0, 2.0])), "NaN on one side only is a difference"
    assert max_difference([1.0], [1.0, 2.0]) == math.inf
