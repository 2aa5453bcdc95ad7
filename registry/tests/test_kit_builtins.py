"""The conformance kit run over the core's own built-ins."""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance, SchedulerCase, SchedulerConformance


class TestSGD(OptimizerConformance):
    distribution = "optreg"
    cases = [
        OptimizerCase(spec={"type": "sgd", "lr": 0.05}, descent={"rosenbrock": {"lr": 1e-3}}, capabilities={"foreach"}),
        OptimizerCase(
            spec={"type": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
            descent={"rosenbrock": {"lr": 1e-4}},
            capabilities={"foreach"},
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "sgd", "lr": -1.0}, path="$.lr", match="must be >= 0"),
        ErrorCase(spec={"type": "sgd", "nesterov": True}, path="$.nesterov", match="momentum > 0"),
        ErrorCase(spec={"type": "sgd", "momentum": 1.0}, path="$.momentum", match=r"in \[0, 1\)"),
    ]


class TestConstant(SchedulerConformance):
    distribution = "optreg"
    error_cases = [
        ErrorCase(spec={"type": "constant", "units": "epochs"}, path="$.units", match="expected one of 'steps'"),
        ErrorCase(spec={"type": "constant", "t_max": 0}, path="$.t_max", match=r"must be in \[1, "),
    ]
    cases = [
        SchedulerCase(spec={"type": "constant"}, t_max=10, initial_lr=0.5, expected={0: 0.5, 5: 0.5, 10: 0.5, 20: 0.5}),
        SchedulerCase(
            spec={"type": "constant", "units": "tokens"}, t_max=1000, step_tokens=64, expected={0: 1.0, 640: 1.0}
        ),
    ]
