"""The conformance kit over adam and adamw and their main option combinations."""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

DIST = "optreg-adam"
SF = {"step_factor", "foreach"}
#: The user asked for bfloat16 moments: the state is bf16 by request (the float64 param itself is still
#: updated in float64, see test_edges.test_float64_params_with_low_precision_state_stay_float64).
BF16_STATE = "state_dtype = 'bfloat16' stores the moments in bfloat16, as the user asked"


class TestAdam(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "adam", "lr": 0.05}, capabilities=SF, descent={"rosenbrock": {"lr": 0.02}}),
        OptimizerCase(
            spec={"type": "adam", "lr": 0.05, "weight_decay": 1e-3, "amsgrad": True},
            capabilities=SF,
            descent={"rosenbrock": {"lr": 0.02}},
        ),
        OptimizerCase(spec={"type": "adam", "lr": 0.05, "foreach": False}, capabilities={"step_factor"},
                      descent={"rosenbrock": {"lr": 0.02}}, id="adam-per-tensor"),
    ]
    error_cases = [
        ErrorCase(spec={"type": "adam", "lr": -1.0}, path="$.lr", match="must be >= 0"),
        ErrorCase(spec={"type": "adam", "betas": [0.9, 1.0]}, path="$.betas[1]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "adam", "betas": [-0.1, 0.99]}, path="$.betas[0]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "adam", "eps": -1e-8}, path="$.eps", match="must be >= 0"),
        ErrorCase(spec={"type": "adam", "weight_decay": -0.1}, path="$.weight_decay", match="must be >= 0"),
        ErrorCase(spec={"type": "adam", "lr": float("nan")}, path="$.lr", match="finite"),
        ErrorCase(spec={"type": "adam", "foreach": True, "fused": True}, path="$.fused", match="not both"),
    ]


class TestAdamW(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "adamw", "lr": 0.05}, capabilities=SF, descent={"rosenbrock": {"lr": 0.02}}),
        OptimizerCase(
            spec={"type": "adamw", "lr": 0.05, "amsgrad": True, "weight_decay": 0.1},
            capabilities=SF,
            descent={"rosenbrock": {"lr": 0.02}},
        ),
        OptimizerCase(spec={"type": "adamw", "lr": 0.05, "maximize": True}, capabilities=SF,
                      skip={"descent_quadratic": "maximize ascends", "descent_rosenbrock": "maximize ascends",
                            "descent_mlp": "maximize ascends"}),
        OptimizerCase(spec={"type": "adamw", "lr": 0.05, "fused": True}, capabilities={"step_factor"},
                      descent={"rosenbrock": {"lr": 0.02}}, id="adamw-fused"),
        OptimizerCase(spec={"type": "adamw", "lr": 0.05, "state_dtype": "bfloat16"},
                      capabilities={"step_factor", "compile"}, descent={"rosenbrock": {"lr": 0.02}},
                      skip={"float64": BF16_STATE}, id="adamw-bf16-state"),
        OptimizerCase(spec={"type": "adamw", "lr": 0.05, "state_dtype": "bfloat16", "amsgrad": True},
                      capabilities={"step_factor", "compile"}, descent={"rosenbrock": {"lr": 0.02}},
                      skip={"float64": BF16_STATE}, id="adamw-bf16-amsgrad"),
    ]
    error_cases = [
        ErrorCase(spec={"type": "adamw", "lr": -1e-3}, path="$.lr", match="must be >= 0"),
        ErrorCase(spec={"type": "adamw", "betas": [1.0, 0.999]}, path="$.betas[0]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "adamw", "state_dtype": "float16"}, path="$.state_dtype", match="one of"),
        ErrorCase(spec={"type": "adamw", "state_dtype": "bfloat16", "fused": True}, path="$.state_dtype",
                  match="per-tensor"),
    ]
