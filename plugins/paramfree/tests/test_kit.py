"""The conformance kit over every name of optreg-paramfree and its main option combinations."""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

SF = {"step_factor"}
# Rosenbrock's valley makes an unbounded d overshoot; capping d's growth per step is the documented remedy.
CAPPED = {"rosenbrock": {"growth_rate": 1.1}}


def tiny_first_steps(what: str) -> dict[str, str]:
    return {
        "bf16": f"{what} by design, below bf16's resolution (2^-8 of a weight), so 5 bf16 steps move nothing; "
        "a case with a larger initial step runs this check"
    }


class TestProdigy(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "prodigy"}, capabilities=SF, descent=CAPPED),
        OptimizerCase(
            spec={"type": "prodigy", "weight_decay": 0.01, "use_bias_correction": True, "slice_p": 3,
                  "growth_rate": 1.5, "per_group_d": True},
            capabilities=SF,
            descent=CAPPED,
            skip={"compiled_parity": "slice_p > 1 steps eagerly under compile = true (documented): nothing compiles"},
        ),
        # compile tolerance: without momentum, d grows 10x in one step here and s scales with (d / d0) * d; the
        # eager run alone ends 2.5e-5 (params) and 0.8% (s) apart after a 1e-7 nudge of the initial weights,
        # compiled and eager ~10x closer than that (6e-6, s 0.06%)
        OptimizerCase(spec={"type": "prodigy", "betas": [0.0, 0.99], "decouple": False, "weight_decay": 1e-3,
                            "safeguard_warmup": True, "d_coef": 2.0}, capabilities=SF, compile_rtol=1e-3,
                      compile_atol=1e-5),
    ]
    error_cases = [
        ErrorCase(spec={"type": "prodigy", "d0": 0.0}, path="$.d0", match="must be > 0"),
        ErrorCase(spec={"type": "prodigy", "betas": [0.9, 1.0]}, path="$.betas[1]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "prodigy", "growth_rate": 0.5}, path="$.growth_rate", match=">= 1"),
        ErrorCase(spec={"type": "prodigy", "lr": -1.0}, path="$.lr", match=">= 0"),
    ]


class TestDAdaptAdamW(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "dadapt_adamw"}, capabilities=SF),
        OptimizerCase(
            spec={"type": "dadapt_adamw", "weight_decay": 0.01, "decouple": False, "use_bias_correction": True,
                  "growth_rate": 2.0, "per_group_d": True},
            capabilities=SF,
        ),
    ]
    error_cases = [ErrorCase(spec={"type": "dadapt_adamw", "eps": -1.0}, path="$.eps", match=">= 0")]


class TestDAdaptSGD(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "dadapt_sgd"}, capabilities=SF,
                      skip=tiny_first_steps("the first steps are d0 = 1e-6 long")),
        OptimizerCase(spec={"type": "dadapt_sgd", "momentum": 0.9, "weight_decay": 1e-4, "per_group_d": True},
                      capabilities=SF, skip=tiny_first_steps("the first steps are d0 = 1e-6 long")),
        OptimizerCase(spec={"type": "dadapt_sgd", "d0": 1e-2, "growth_rate": 1.2}, capabilities=SF),
    ]
    error_cases = [ErrorCase(spec={"type": "dadapt_sgd", "momentum": 1.0}, path="$.momentum", match=r"in \[0, 1\)")]


class TestDAdaptLion(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "dadapt_lion"}, capabilities=SF),
        OptimizerCase(spec={"type": "dadapt_lion", "weight_decay": 0.01, "per_group_d": True}, capabilities=SF),
    ]


class TestDoG(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "dog"}, capabilities=SF,
                      skip=tiny_first_steps("the first step is r_eps = 1e-6 * (1 + ||x0||) long")),
        OptimizerCase(spec={"type": "dog", "init_step": "distance", "init_step_value": 1e-3, "per_group_d": True},
                      capabilities=SF),
        OptimizerCase(spec={"type": "dog", "init_step": "learning_rate", "init_step_value": 1e-3,
                            "weight_decay": 1e-4}, capabilities=SF),
    ]
    error_cases = [
        ErrorCase(spec={"type": "dog", "init_step": "lr"}, path="$.init_step", match="one of"),
        ErrorCase(spec={"type": "dog", "init_step_value": 0.0}, path="$.init_step_value", match="> 0"),
    ]


class TestDoWG(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "dowg"}, capabilities=SF),
        OptimizerCase(spec={"type": "dowg", "init_estim_sq_dist": 1e-6, "per_group_d": True}, capabilities=SF),
    ]


class TestCOCOB(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "cocob"}, capabilities=SF),
        OptimizerCase(spec={"type": "cocob", "alpha": 50.0, "weight_decay": 1e-4}, capabilities=SF),
    ]
    error_cases = [ErrorCase(spec={"type": "cocob", "alpha": 0.0}, path="$.alpha", match="> 0")]


class TestMechanic(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1}},
                      skip=tiny_first_steps("Mechanic's scale starts at s_init = 1e-6")),
        OptimizerCase(spec={"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1, "momentum": 0.9}, "num_betas": 3},
                      skip=tiny_first_steps("Mechanic's scale starts at s_init = 1e-6")),
        OptimizerCase(spec={"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1}, "s_init": 1e-2},
                      id="mechanic-s_init=0.01"),
        OptimizerCase(
            spec={"type": "mechanic", "inner": {"type": "dog", "init_step": "learning_rate", "init_step_value": 0.1},
                  "weight_decay": 0.0},
            capabilities=SF,
            skip=tiny_first_steps("Mechanic's scale starts at s_init = 1e-6"),
            id="mechanic-dog",
        ),
        OptimizerCase(spec={"type": "mechanic", "inner": {"type": "momo"}}, capabilities=SF,
                      skip=tiny_first_steps("Mechanic's scale starts at s_init = 1e-6"), id="mechanic-momo"),
    ]
    error_cases = [
        ErrorCase(spec={"type": "mechanic", "inner": {"type": "sgd", "lr": -1.0}}, path="$.inner.lr", match=">= 0"),
        ErrorCase(spec={"type": "mechanic", "inner": {"type": "nope"}}, path="$.inner.type", match="prodigy"),
        ErrorCase(spec={"type": "mechanic"}, path="$.inner", match="required"),
        ErrorCase(spec={"type": "mechanic", "inner": {"type": "mechanic", "inner": {"type": "sgd"}}},
                  path="$.inner", match="not supported"),
    ]


class TestMomo(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "momo"}, capabilities=SF),
        OptimizerCase(spec={"type": "momo", "weight_decay": 1e-3, "bias_correction": True, "adapt_lower_bound": True},
                      capabilities=SF, descent={"rosenbrock": {"lr": 0.5}}),
    ]
    error_cases = [ErrorCase(spec={"type": "momo", "beta": 1.0}, path="$.beta", match=r"in \[0, 1\)")]


class TestMomoAdam(OptimizerConformance):
    distribution = "optreg-paramfree"
    cases = [
        OptimizerCase(spec={"type": "momo_adam"}, capabilities=SF),
        OptimizerCase(spec={"type": "momo_adam", "weight_decay": 1e-3, "weight_decay_mode": "decoupled",
                            "adapt_lower_bound": True}, capabilities=SF),
    ]
    error_cases = [
        ErrorCase(spec={"type": "momo_adam", "weight_decay_mode": "l2"}, path="$.weight_decay_mode", match="one of")
    ]
