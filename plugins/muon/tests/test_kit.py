"""The conformance kit over muon, normuon, dion and dion2 and their main option combinations."""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

CAPS = {"step_factor", "foreach"}
SMALL_LR = {"quadratic": {"lr": 0.05, "adam_lr": 0.05}, "rosenbrock": {"lr": 0.003, "adam_lr": 0.003}}
#: Newton-Schulz runs in `ns_dtype` by design (bf16 by default, as torch.optim.Muon; float32 on request), so a
#: float64 model with those cases rounds inside the iteration; the float64 cases below (ns_dtype = "float64")
#: check that nothing else in a step does.
NS_PRECISION = {"float64": "Newton-Schulz runs in ns_dtype (bfloat16 / float32 here); float64 params ask for "
                           "ns_dtype = 'float64', checked by the float64 cases"}


class TestMuon(OptimizerConformance):
    distribution = "optreg-muon"
    cases = [
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.01}, capabilities=CAPS, skip=NS_PRECISION, descent=SMALL_LR
        ),
        OptimizerCase(
            spec={
                "type": "muon",
                "lr": 0.02,
                "adam_lr": 0.01,
                "weight_decay": 0.01,
                "cautious_wd": True,
                "ns_coefficients": "polar_express",
                "adjust_lr": "match_rms_adamw",
                "ns_dtype": "float32",
                "nesterov": False,
            },
            capabilities=CAPS, skip=NS_PRECISION,
            descent={"quadratic": {"lr": 0.01, "adam_lr": 0.05}, "rosenbrock": {"lr": 0.01, "adam_lr": 0.003}},
        ),
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.003, "non_matrix_algorithm": "lion"},
            capabilities=CAPS, skip=NS_PRECISION,
            descent={"quadratic": {"lr": 0.05, "adam_lr": 0.01}, "rosenbrock": {"lr": 0.003, "adam_lr": 0.001}},
        ),
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.01, "preconditioning": "aol", "ns_steps": 4,
                  "ns_coefficients": "turbo_aol"},
            capabilities=CAPS, skip=NS_PRECISION,
            descent=SMALL_LR,
        ),
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.01, "preconditioning": "spectral",
                  "ns_coefficients": [[3.4445, -4.775, 2.0315], [3.0, -3.2, 1.2]], "adjust_lr": "none"},
            capabilities=CAPS, skip=NS_PRECISION,
            descent=SMALL_LR,
        ),
        # float64 Newton-Schulz: with float64 params no op of a step rounds below float64 (the kit's float64
        # check), through each preconditioning's extra arithmetic and both non-matrix updates.
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.01, "ns_dtype": "float64", "preconditioning": "spectral",
                  "weight_decay": 0.01, "cautious_wd": True},
            capabilities=CAPS,
            descent=SMALL_LR,
        ),
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.003, "ns_dtype": "float64", "preconditioning": "aol",
                  "non_matrix_algorithm": "lion", "adam_weight_decay": 0.01},
            capabilities=CAPS,
            descent={"quadratic": {"lr": 0.05, "adam_lr": 0.01}, "rosenbrock": {"lr": 0.003, "adam_lr": 0.001}},
        ),
        OptimizerCase(
            spec={"type": "muon", "lr": 0.02, "adam_lr": 0.01, "ns_dtype": "float64", "preconditioning": "schatten",
                  "nesterov": False, "adjust_lr": "match_rms_adamw", "adam_weight_decay": 0.01},
            capabilities=CAPS,
            descent={"quadratic": {"lr": 0.05, "adam_lr": 0.05}, "rosenbrock": {"lr": 0.01, "adam_lr": 0.003}},
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "muon", "lr": -1.0}, path="$.lr", match="must be >= 0"),
        ErrorCase(spec={"type": "muon", "momentum": 1.0}, path="$.momentum", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "muon", "adam_betas": [0.9, 1.0]}, path="$.adam_betas[1]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "muon", "ns_coefficients": "muom"}, path="$.ns_coefficients", match="expected"),
        ErrorCase(spec={"type": "muon", "ns_coefficients": [1.0, 2.0]}, path="$.ns_coefficients[0]", match="3 numbers"),
        ErrorCase(spec={"type": "muon", "preconditioning": "spectal"}, path="$.preconditioning", match="spectral"),
        ErrorCase(spec={"type": "muon", "ns_steps": 0}, path="$.ns_steps", match=r"in \[1, 99\]"),
        ErrorCase(
            spec={"type": "muon", "split_sizes": [6, 6], "num_heads": 4}, path="$.num_heads", match="divisible"
        ),
        ErrorCase(
            spec={"type": "muon", "ns_dtype": "float64", "ns_backend": "triton"}, path="$.ns_backend", match="float64"
        ),
        ErrorCase(spec={"type": "muon", "ns_dtype": "float16"}, path="$.ns_dtype", match="float64"),
    ]


class TestNorMuon(OptimizerConformance):
    distribution = "optreg-muon"
    cases = [
        OptimizerCase(
            spec={"type": "normuon", "lr": 0.02, "adam_lr": 0.01},
            capabilities=CAPS, skip=NS_PRECISION,
            descent={**SMALL_LR, "rosenbrock": {"lr": 0.01}},
        ),
        OptimizerCase(
            spec={"type": "normuon", "lr": 0.02, "adam_lr": 0.01, "nesterov": True, "muon_beta2": 0.9,
                  "adjust_lr": "spectral_norm", "weight_decay": 0.01},
            capabilities=CAPS, skip=NS_PRECISION,
            descent=SMALL_LR,
        ),
        OptimizerCase(
            spec={"type": "normuon", "lr": 0.02, "adam_lr": 0.01, "ns_dtype": "float64", "weight_decay": 0.01},
            capabilities=CAPS,
            descent={**SMALL_LR, "rosenbrock": {"lr": 0.01}},
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "normuon", "muon_beta2": 1.5}, path="$.muon_beta2", match=r"in \[0, 1\)"),
    ]


class TestDion(OptimizerConformance):
    distribution = "optreg-muon"
    cases = [
        OptimizerCase(spec={"type": "dion", "lr": 0.02, "adam_lr": 0.01}, capabilities=CAPS, descent=SMALL_LR),
        OptimizerCase(
            spec={"type": "dion", "lr": 0.02, "adam_lr": 0.01, "rank_fraction": 0.5, "weight_decay": 0.01,
                  "power_iters": 2},
            capabilities=CAPS,
            descent=SMALL_LR,
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "dion", "rank_fraction": 0.0}, path="$.rank_fraction", match=r"in \(0, 1\]"),
        ErrorCase(spec={"type": "dion", "mu": -0.1}, path="$.mu", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "dion", "flatten": False}, path="$.flatten", match="flatten"),
    ]


class TestDion2(OptimizerConformance):
    distribution = "optreg-muon"
    cases = [
        OptimizerCase(
            spec={"type": "dion2", "lr": 0.02, "adam_lr": 0.01}, capabilities=CAPS, skip=NS_PRECISION, descent=SMALL_LR
        ),
        # Columns of the kit's matrices, every option of the update's tail, float64 Newton-Schulz: with float64
        # params no op of a step rounds below float64.
        OptimizerCase(
            spec={"type": "dion2", "lr": 0.02, "adam_lr": 0.01, "fraction": 0.5, "ef_decay": 0.9, "select_dim": "cols",
                  "weight_decay": 0.01, "cautious_wd": True, "ns_dtype": "float64", "ns_coefficients": "muon",
                  "adjust_lr": "match_rms_adamw"},
            capabilities=CAPS,
            descent={**SMALL_LR, "rosenbrock": {"lr": 0.01}},
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "dion2", "fraction": 0.0}, path="$.fraction", match=r"in \(0, 1\]"),
        ErrorCase(spec={"type": "dion2", "ef_decay": 1.5}, path="$.ef_decay", match=r"in \[0, 1\]"),
        ErrorCase(spec={"type": "dion2", "select_dim": "diagonal"}, path="$.select_dim", match="rows"),
        ErrorCase(
            spec={"type": "dion2", "ns_dtype": "float64", "ns_backend": "triton"}, path="$.ns_backend", match="float64"
        ),
    ]
