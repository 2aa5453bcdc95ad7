"""The conformance kit over every name of optreg-skipstep."""

import pytest

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

# The SGD case runs the host-synced fallback on purpose, so each build warns about it; test_skipstep.py
# asserts that warning, here it would only repeat in the summary.
pytestmark = pytest.mark.filterwarnings("ignore:skip_step. SGD does not accept step_factor:RuntimeWarning")
NEVER_MOVES = "noop never changes a parameter, by design (checked in test_skipstep.py)"


class TestSkipStep(OptimizerConformance):
    distribution = "optreg-skipstep"
    cases = [
        OptimizerCase(
            spec={"type": "skip_step", "inner": {"type": "lion", "lr": 0.02, "weight_decay": 0.01}},
            capabilities={"step_factor"},
            descent={"rosenbrock": {"inner": {"type": "lion", "lr": 2e-3}}},
            id="skip_step-lion",
        ),
        OptimizerCase(
            spec={
                "type": "skip_step",
                "inner": {"type": "signum", "lr": 0.02, "nesterov": True},
                "rolling_interval_length": 16,
                "sigma_factor": 3.0,
                "min_samples": 4,
            },
            capabilities={"step_factor"},
            descent={"rosenbrock": {"inner": {"type": "signum", "lr": 2e-3}}},
            id="skip_step-signum-short-window",
        ),
        OptimizerCase(  # no step_factor capability: torch's SGD cannot gate on the device (host-synced fallback)
            spec={"type": "skip_step", "inner": {"type": "sgd", "lr": 0.05, "momentum": 0.9}},
            descent={"rosenbrock": {"inner": {"type": "sgd", "lr": 1e-3}}},
            id="skip_step-sgd-host-synced",
        ),
    ]
    error_cases = [
        ErrorCase(
            spec={"type": "skip_step", "inner": {"type": "lion"}, "sigma_factor": -1.0},
            path="$.sigma_factor",
            match="must be >= 0",
        ),
        ErrorCase(
            spec={"type": "skip_step", "inner": {"type": "lion"}, "rolling_interval_length": 1},
            path="$.rolling_interval_length",
            match=r"must be in \[2, 1048576\]",
        ),
        ErrorCase(
            spec={"type": "skip_step", "inner": {"type": "lion"}, "rolling_interval_length": 8, "min_samples": 9},
            path="$.min_samples",
            match="rolling_interval_length",
        ),
        ErrorCase(spec={"type": "skip_step", "inner": {"type": "lion", "lr": -1.0}}, path="$.inner.lr", match=">= 0"),
        ErrorCase(spec={"type": "skip_step", "inner": {"type": "nope"}}, path="$.inner.type", match="lion"),
        ErrorCase(spec={"type": "skip_step"}, path="$.inner", match="required"),
    ]


class TestSkipStepLion(OptimizerConformance):
    distribution = "optreg-skipstep"
    cases = [
        OptimizerCase(
            spec={"type": "skip_step_lion", "lr": 0.02}, capabilities={"step_factor", "foreach"},
            descent={"rosenbrock": {"lr": 2e-3}},
        ),
        OptimizerCase(
            spec={"type": "skip_step_lion", "lr": 0.02, "weight_decay": 0.1, "rolling_interval_length": 8,
                  "sigma_factor": 2.0, "track_grad_norm": False},
            capabilities={"step_factor", "foreach"},
            descent={"rosenbrock": {"lr": 2e-3}},
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "skip_step_lion", "betas": (0.9, 1.5)}, path="$.betas[1]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "skip_step_lion", "min_samples": 1}, path="$.min_samples", match=r"in \[2, "),
    ]


class TestSkipStepAdamW(OptimizerConformance):
    distribution = "optreg-skipstep"
    cases = [
        OptimizerCase(
            spec={"type": "skip_step_adamw", "lr": 0.02}, capabilities={"step_factor", "foreach"},
            descent={"rosenbrock": {"lr": 0.01}},
        ),
        OptimizerCase(
            spec={"type": "skip_step", "inner": {"type": "adamw", "lr": 0.02, "amsgrad": True},
                  "rolling_interval_length": 8},
            capabilities={"step_factor"},
            descent={"rosenbrock": {"inner": {"type": "adamw", "lr": 0.01}}},
            id="skip_step-adamw-amsgrad",
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "skip_step_adamw", "eps": -1.0}, path="$.eps", match=">= 0"),
        ErrorCase(spec={"type": "skip_step_adamw", "sigma_factor": -1.0}, path="$.sigma_factor", match=">= 0"),
    ]


class TestNoOp(OptimizerConformance):
    distribution = "optreg-skipstep"
    cases = [
        OptimizerCase(
            spec={"type": "noop"},
            capabilities={"step_factor"},
            skip={
                "descent_quadratic": NEVER_MOVES,
                "descent_rosenbrock": NEVER_MOVES,
                "descent_mlp": NEVER_MOVES,
                "none_grads": NEVER_MOVES,
                "zero_size_and_frozen": NEVER_MOVES,
                "bf16": NEVER_MOVES,
                "group_overrides": NEVER_MOVES,
                "add_param_group": NEVER_MOVES + "; test_noop_add_param_group checks the added group is tracked",
                "non_finite": NEVER_MOVES,
            },
        ),
    ]
    error_cases = [ErrorCase(spec={"type": "noop", "lr": -1.0}, path="$.lr", match=">= 0")]
