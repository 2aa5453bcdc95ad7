"""The conformance kit over ademamix, simplified_ademamix, adopt, laprop, acprop and madam."""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

DIST = "optreg-adam"
SF = {"step_factor"}
ROSEN = {"rosenbrock": {"lr": 0.02}}


class TestAdEMAMix(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "ademamix", "lr": 0.05}, capabilities=SF, descent=ROSEN),
        OptimizerCase(spec={"type": "ademamix", "lr": 0.05, "alpha": 5.0, "alpha_warmup": 50, "beta3_warmup": 50,
                            "weight_decay": 0.01}, capabilities=SF, descent=ROSEN),
    ]
    error_cases = [
        ErrorCase(spec={"type": "ademamix", "betas": [0.9, 0.999, 1.0]}, path="$.betas[2]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "ademamix", "alpha": -1.0}, path="$.alpha", match=">= 0"),
        ErrorCase(spec={"type": "ademamix", "alpha_warmup": 0}, path="$.alpha_warmup", match=r"in \[1, "),
        ErrorCase(spec={"type": "ademamix", "eps": -1.0}, path="$.eps", match=">= 0"),
    ]


class TestSimplifiedAdEMAMix(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "simplified_ademamix", "lr": 2e-3, "betas": [0.9, 0.95]}, capabilities=SF,
                      descent={"rosenbrock": {"lr": 5e-4}}),
        OptimizerCase(spec={"type": "simplified_ademamix", "lr": 0.05, "alpha": 2.0, "beta1_warmup": 20,
                            "bias_correction1": True, "weight_decay": 0.01}, capabilities=SF,
                      descent={"rosenbrock": {"lr": 5e-3}}),
    ]
    error_cases = [
        ErrorCase(spec={"type": "simplified_ademamix", "min_beta1": 1.0}, path="$.min_beta1", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "simplified_ademamix", "lr": -1.0}, path="$.lr", match=">= 0"),
    ]


class TestADOPT(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "adopt", "lr": 0.05}, capabilities=SF, descent=ROSEN),
        # compile_atol: unclipped, g / sqrt(v) reaches ~3 here (steps of 0.14); the eager run alone ends 2e-3 apart
        # after a 1e-7 nudge of the initial weights, compiled and eager ~1e-6 (a param near 0 fails atol=1e-7)
        OptimizerCase(spec={"type": "adopt", "lr": 0.05, "clip": False, "weight_decay": 0.01,
                            "decoupled_weight_decay": True}, capabilities=SF, descent=ROSEN, compile_atol=1e-6),
        OptimizerCase(spec={"type": "adopt", "lr": 0.05, "weight_decay": 0.01}, capabilities=SF, descent=ROSEN,
                      id="adopt-l2"),
    ]
    error_cases = [
        ErrorCase(spec={"type": "adopt", "clip_exponent": 0.0}, path="$.clip_exponent", match="> 0"),
        ErrorCase(spec={"type": "adopt", "eps": 0.0}, path="$.eps", match="> 0"),
        ErrorCase(spec={"type": "adopt", "betas": [0.9, -0.5]}, path="$.betas[1]", match=r"in \[0, 1\)"),
    ]


class TestLaProp(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "laprop", "lr": 0.05}, capabilities=SF, descent=ROSEN),
        OptimizerCase(spec={"type": "laprop", "lr": 0.05, "betas": [0.95, 0.5], "weight_decay": 0.01},
                      capabilities=SF, descent=ROSEN),
    ]
    error_cases = [ErrorCase(spec={"type": "laprop", "weight_decay": -0.1}, path="$.weight_decay", match=">= 0")]


class TestACProp(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "acprop", "lr": 0.02}, capabilities=SF, descent={"rosenbrock": {"lr": 5e-3}}),
        OptimizerCase(spec={"type": "acprop", "lr": 0.02, "momentum_update": True, "weight_decay": 0.01},
                      capabilities=SF, descent={"rosenbrock": {"lr": 5e-3}}),
        OptimizerCase(spec={"type": "acprop", "lr": 0.02, "centering": "previous", "weight_decay": 0.01},
                      capabilities=SF, descent={"rosenbrock": {"lr": 5e-3}}),
    ]
    error_cases = [
        ErrorCase(spec={"type": "acprop", "betas": [1.5, 0.9]}, path="$.betas[0]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "acprop", "centering": "momentum"}, path="$.centering", match="previous"),
    ]


class TestMadam(OptimizerConformance):
    distribution = DIST
    cases = [
        OptimizerCase(spec={"type": "madam", "lr": 0.05}, capabilities=SF, descent=ROSEN),
        OptimizerCase(spec={"type": "madam", "lr": 0.05, "scale_log2": 0, "weight_decay": 0.01}, capabilities=SF,
                      descent=ROSEN),
    ]
    error_cases = [
        ErrorCase(spec={"type": "madam", "scale_log2": 31}, path="$.scale_log2", match="even"),
        ErrorCase(spec={"type": "madam", "scale_log2": 200}, path="$.scale_log2", match=r"in \[0, 120\]"),
        ErrorCase(spec={"type": "madam", "eps": 1e-8}, path="$.eps", match="unknown key"),
    ]
