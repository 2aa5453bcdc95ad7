"""The optreg conformance kit over every name of optreg-contrib.

Skipped checks say why. ``sam`` and ``sophia`` need a closure that recomputes the gradients (``sophia``
on its Hessian steps, the first included); the kit's checks named in ``GRADS_IN_PLACE`` step with the
gradients already in ``.grad`` and a closure that only returns the loss, so those optimizers refuse
them with their contract's error (tests/test_sam.py and tests/test_sophia.py check the same properties
with real closures). ``dpsgd`` steps from per-sample gradients, which the kit's problems do not make:
tests/test_dpsgd.py checks descent, resume, copies, None / zero gradients and groups with them.
"""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

DISTRIBUTION = "optreg-contrib"

#: Kit checks that step with the gradients in place and a closure that does not recompute them.
GRADS_IN_PLACE = ("none_grads", "zero_grads", "zero_size_and_frozen", "float64", "non_finite")


def _needs_closure(name: str, where: str) -> dict[str, str]:
    return dict.fromkeys(GRADS_IN_PLACE, f"{name} recomputes the gradients through step(closure); covered in {where}")


SAM_SKIPS = {
    **_needs_closure("sam", "tests/test_sam.py"),
    "closure": "sam returns the first pass's loss (at p), the kit expects the last closure call's (at p + e); "
               "tests/test_sam.py checks both calls and the returned loss",
}


class TestSAM(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        OptimizerCase(spec={"type": "sam", "inner": {"type": "adamw", "lr": 0.02}}, skip=SAM_SKIPS,
                      descent={"rosenbrock": {"inner": {"type": "adamw", "lr": 0.01}, "rho": 0.01}}),
        OptimizerCase(spec={"type": "sam", "rho": 0.02, "adaptive": True, "inner": {"type": "sgd", "lr": 0.05,
                                                                                   "momentum": 0.9}},
                      skip=SAM_SKIPS, descent={"rosenbrock": {"inner": {"type": "sgd", "lr": 1e-3}}}, id="asam-sgd"),
    ]
    error_cases = [
        ErrorCase(spec={"type": "sam"}, path="$.inner", match="required"),
        ErrorCase(spec={"type": "sam", "rho": 0.0, "inner": {"type": "sgd"}}, path="$.rho", match="> 0"),
        ErrorCase(spec={"type": "sam", "eta": -1.0, "inner": {"type": "sgd"}}, path="$.eta", match=">= 0"),
        ErrorCase(spec={"type": "sam", "inner": {"type": "sgd", "lr": -1.0}}, path="$.inner.lr", match=">= 0"),
        ErrorCase(spec={"type": "sam", "inner": {"type": "sam", "inner": {"type": "sgd"}}}, path="$.inner",
                  match="cannot be the inner optimizer"),
        ErrorCase(spec={"type": "sam", "inner": {"type": "sophia"}}, path="$.inner", match="cannot be the inner"),
    ]


class TestSophia(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        OptimizerCase(spec={"type": "sophia", "lr": 0.02, "update_interval": 3}, skip=_needs_closure(
            "sophia", "tests/test_sophia.py"), descent={"rosenbrock": {"lr": 2e-3}}),
        OptimizerCase(spec={"type": "sophia", "lr": 0.02, "weight_decay": 0.0, "distribution": "rademacher",
                            "gamma": 0.05, "rho": 0.5, "seed": 3},
                      skip=_needs_closure("sophia", "tests/test_sophia.py"), descent={"rosenbrock": {"lr": 2e-3}}),
    ]
    error_cases = [
        ErrorCase(spec={"type": "sophia", "betas": [0.9, 1.0]}, path="$.betas[1]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "sophia", "rho": 0.0}, path="$.rho", match="> 0"),
        ErrorCase(spec={"type": "sophia", "gamma": -1.0}, path="$.gamma", match="> 0"),
        ErrorCase(spec={"type": "sophia", "update_interval": 0}, path="$.update_interval", match=r"in \[1, "),
        ErrorCase(spec={"type": "sophia", "distribution": "uniform"}, path="$.distribution", match="rademacher"),
    ]


class TestGaLore(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        # compile_atol: the projection is an SVD of the gradient every 3 steps, as far (1.4e-6) from the eager run's
        # after compiled inner steps as after a 1e-7 nudge of the initial weights
        OptimizerCase(spec={"type": "galore", "rank": 4, "update_proj_gap": 3, "scale": 1.0,
                            "inner": {"type": "adamw", "lr": 0.02}}, compile_atol=1e-5),
        OptimizerCase(spec={"type": "galore", "rank": 2, "update_proj_gap": 2,
                            "inner": {"type": "sgd", "lr": 0.1, "momentum": 0.9}},
                      descent={"rosenbrock": {"inner": {"type": "sgd", "lr": 1e-3}}}, id="galore-sgd"),
        OptimizerCase(spec={"type": "galore"}, descent={"quadratic": {"inner": {"type": "adamw", "lr": 0.05}},
                                                        "mlp": {"inner": {"type": "adamw", "lr": 0.01}},
                                                        "rosenbrock": {"inner": {"type": "adamw", "lr": 0.01}}},
                      id="galore-defaults"),
    ]
    error_cases = [
        ErrorCase(spec={"type": "galore", "rank": 0}, path="$.rank", match=r"in \[1, "),
        ErrorCase(spec={"type": "galore", "scale": 0.0}, path="$.scale", match="> 0"),
        ErrorCase(spec={"type": "galore", "update_proj_gap": 0}, path="$.update_proj_gap", match=r"in \[1, "),
        ErrorCase(spec={"type": "galore", "inner": {"type": "dpsgd"}}, path="$.inner", match="cannot be the inner"),
    ]


#: The authors' MADGRAD steps with lr + eps: a group with lr = 0 still moves (tests/test_madgrad.py shows it).
MADGRAD_SKIPS = {"group_overrides": "as the authors' code, the step uses lr + eps, so an lr = 0 group moves by "
                                    "about eps^(2/3) (tests/test_madgrad.py checks it)"}


class TestMADGRAD(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        OptimizerCase(spec={"type": "madgrad", "lr": 0.02}, descent={"rosenbrock": {"lr": 2e-3}}, skip=MADGRAD_SKIPS),
        OptimizerCase(spec={"type": "madgrad", "lr": 0.02, "momentum": 0.0, "weight_decay": 1e-3},
                      descent={"rosenbrock": {"lr": 2e-3}}, skip=MADGRAD_SKIPS),
        OptimizerCase(spec={"type": "madgrad", "lr": 0.02, "weight_decay": 1e-2, "decouple_decay": True},
                      descent={"rosenbrock": {"lr": 2e-3}}, skip=MADGRAD_SKIPS),
    ]
    error_cases = [
        ErrorCase(spec={"type": "madgrad", "momentum": 1.0}, path="$.momentum", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "madgrad", "eps": 0.0}, path="$.eps", match="> 0"),
    ]


DPSGD_SKIPS = dict.fromkeys(
    ("descent_quadratic", "descent_rosenbrock", "descent_mlp", "resume", "none_grads", "zero_grads",
     "zero_size_and_frozen", "bf16", "group_overrides", "closure", "copy", "float64", "complex", "add_param_group",
     "state_dict_hooks", "non_finite", "state_estimate"),
    "dpsgd steps from per-sample gradients (p.grad_sample), which the kit's problems do not make; "
    "tests/test_dpsgd.py checks this with per_sample_grads",
)


class TestDPSGD(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        OptimizerCase(spec={"type": "dpsgd", "seed": 0}, skip=DPSGD_SKIPS),
        OptimizerCase(spec={"type": "dpsgd", "momentum": 0.9, "nesterov": True, "noise_multiplier": 0.5},
                      skip=DPSGD_SKIPS),
    ]
    error_cases = [
        ErrorCase(spec={"type": "dpsgd", "l2_norm_clip": 0.0}, path="$.l2_norm_clip", match="> 0"),
        ErrorCase(spec={"type": "dpsgd", "noise_multiplier": -1.0}, path="$.noise_multiplier", match=">= 0"),
        ErrorCase(spec={"type": "dpsgd", "nesterov": True}, path="$.nesterov", match="momentum > 0"),
        ErrorCase(spec={"type": "dpsgd", "seed": -1}, path="$.seed", match=">= 0"),
    ]


class TestSplitComplex(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        OptimizerCase(spec={"type": "split_complex", "inner": {"type": "adamw", "lr": 0.02}},
                      descent={"rosenbrock": {"inner": {"type": "adamw", "lr": 0.01}}}),
        OptimizerCase(spec={"type": "split_complex", "inner": {"type": "lion", "lr": 0.003}},
                      descent={"rosenbrock": {"inner": {"type": "lion", "lr": 3e-3}},
                               "quadratic": {"inner": {"type": "lion", "lr": 0.02}}}),
    ]
    error_cases = [
        ErrorCase(spec={"type": "split_complex"}, path="$.inner", match="required"),
        ErrorCase(spec={"type": "split_complex", "inner": {"type": "sam", "inner": {"type": "sgd"}}},
                  path="$.inner", match="wrap split_complex in sam"),
    ]
