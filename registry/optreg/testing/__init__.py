"""The conformance kit: checks every optimizer and scheduler plugin inherits.

In a plugin's ``tests/conftest.py``::

    pytest_plugins = ["optreg.testing.plugin"]

and in a test module::

    from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

    class TestMyAdam(OptimizerConformance):
        distribution = "optreg-myadam"
        cases = [OptimizerCase(spec={"type": "my_adam", "lr": 1e-2}, capabilities={"step_factor"})]
        error_cases = [ErrorCase(spec={"type": "my_adam", "lr": -1.0}, path="$.lr", match="must be >= 0")]

Every ``test_*`` of the base class then runs for every case: discovery in a
fresh registry, round trip, strict errors, descent on a quadratic, Rosenbrock
and a tiny MLP, exact save/load/resume, None and zero grads, 0-size and frozen
params, bf16, group overrides, closure, and the declared capabilities; and
``test_fuzz_specs``, property-based fuzzing of the spec (:mod:`optreg.testing.fuzz`, with hypothesis).
"""

from optreg.testing.cases import CAPABILITIES, CHECKS, ErrorCase, OptimizerCase, SchedulerCase
from optreg.testing.checks import (
    OptimizerConformance,
    SchedulerConformance,
    assert_state_equal,
    assert_step_factor_contract,
)
from optreg.testing.problems import PROBLEMS, make_problem

__all__ = [
    "CAPABILITIES",
    "CHECKS",
    "ErrorCase",
    "OptimizerCase",
    "OptimizerConformance",
    "PROBLEMS",
    "SchedulerCase",
    "SchedulerConformance",
    "assert_state_equal",
    "assert_step_factor_contract",
    "make_problem",
]
