"""The optreg conformance kit over every optimizer of optreg-torch (torch's own classes, built from specs)."""

from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

DISTRIBUTION = "optreg-torch"

#: torch's NAdam and ASGD keep 0-dim step scalars in float32 (torch.optim.optimizer._get_scalar_dtype() is float32
#: unless the *default* dtype is float64), so a float64 step multiplies by a float32 value.
FLOAT32_SCALARS = "torch's {} keeps {} as a float32 0-dim tensor under float64 params (torch's _get_scalar_dtype)"

#: SparseAdam steps sparse gradients only (nn.Embedding(sparse=True)); every problem of the kit gives dense ones,
#: on which torch raises "SparseAdam does not support dense gradients". tests/test_sparse_adam.py runs these
#: checks (descent, resume, closure, copies, maximize, None grads, 0-difference with torch) on sparse gradients.
DENSE = "the kit's problems give dense gradients, which torch's SparseAdam refuses (see tests/test_sparse_adam.py)"
SPARSE_ONLY = dict.fromkeys(
    (
        "descent_quadratic", "descent_rosenbrock", "descent_mlp", "resume", "none_grads", "zero_grads",
        "zero_size_and_frozen", "bf16", "group_overrides", "closure", "copy", "float64", "add_param_group",
        "state_dict_hooks", "maximize", "non_finite", "state_estimate",
    ),
    DENSE,
)

#: What torch's LBFGS does differently from the kit's expectations (each covered in tests/test_lbfgs.py).
LBFGS = {
    "group_overrides": "torch's LBFGS takes one param group only: the spec refuses group_overrides",
    "add_param_group": "torch's LBFGS takes one param group only (its step asserts it after add_param_group)",
    "closure": "torch's LBFGS.step returns the loss of its first closure evaluation (before the step), not its last",
    "copy": "a deepcopy or unpickled torch LBFGS cannot step: its parameter list (_params) is not in the "
    "pickled state (torch 2.13)",
    "resume": "torch.distributed.checkpoint's set_state_dict steps the optimizer with closure=None to create its "
    "state, which LBFGS refuses; the plain state_dict resume is checked in tests/test_lbfgs.py",
}


class TestTorchOptimizers(OptimizerConformance):
    distribution = DISTRIBUTION
    cases = [
        OptimizerCase(spec={"type": "adadelta"}, descent={"quadratic": {"lr": 10.0}, "rosenbrock": {"lr": 0.5}}),
        OptimizerCase(
            spec={"type": "adafactor", "lr": 0.05, "weight_decay": 0.01},
            skip={"zero_size_and_frozen": "torch's Adafactor divides by a parameter's element count "
                  "(ZeroDivisionError on a 0-element parameter, torch 2.13)"},
        ),
        OptimizerCase(spec={"type": "adagrad", "lr": 0.1, "weight_decay": 1e-3}),
        OptimizerCase(spec={"type": "adamax", "lr": 0.02}),
        OptimizerCase(
            spec={"type": "asgd", "lr": 0.05, "t0": 20.0},
            descent={"rosenbrock": {"lr": 1e-3}},
            skip={
                "zero_grads": "ASGD shrinks every parameter by (1 - lambd * eta) each step whatever its gradient "
                "(the paper's lambd term is a decay of its own)",
                "float64": FLOAT32_SCALARS.format("ASGD", "eta and mu"),
            },
        ),
        OptimizerCase(spec={"type": "lbfgs", "lr": 0.5, "max_iter": 4, "history_size": 5}, skip=LBFGS),
        OptimizerCase(
            spec={"type": "nadam", "lr": 0.02, "weight_decay": 0.01, "decoupled_weight_decay": True},
            skip={"float64": FLOAT32_SCALARS.format("NAdam", "mu_product")},
        ),
        OptimizerCase(spec={"type": "radam", "lr": 0.02}),
        OptimizerCase(spec={"type": "rmsprop", "lr": 0.01, "momentum": 0.5, "centered": True}),
        OptimizerCase(
            spec={"type": "rprop", "lr": 0.01},
            skip={"group_overrides": "Rprop's lr is only the initial step size: step sizes are clamped to at least "
                  "step_sizes[0], so a group with lr = 0 still moves"},
        ),
        OptimizerCase(spec={"type": "sparse_adam", "lr": 0.01}, skip=SPARSE_ONLY),
    ]
    error_cases = [
        ErrorCase(spec={"type": "adadelta", "rho": 1.5}, path="$.rho", match=r"in \[0, 1\]"),
        ErrorCase(spec={"type": "adafactor", "beta2_decay": 0.5}, path="$.beta2_decay", match="<= 0"),
        ErrorCase(spec={"type": "adafactor", "d": 0.5}, path="$.d", match=">= 1"),
        ErrorCase(spec={"type": "adagrad", "foreach": True, "fused": True}, path="$.fused", match="not both"),
        ErrorCase(spec={"type": "adamax", "betas": [0.9, 1.0]}, path="$.betas[1]", match=r"in \[0, 1\)"),
        ErrorCase(spec={"type": "lbfgs", "line_search_fn": "armijo"}, path="$.line_search_fn",
                  match="strong_wolfe"),
        ErrorCase(spec={"type": "lbfgs", "max_iter": 0}, path="$.max_iter", match=r"in \[1, "),
        ErrorCase(spec={"type": "lbfgs", "group_overrides": [{"params": ["fc1.*"], "lr": 0.1}]},
                  path="$.group_overrides", match="one parameter group"),
        ErrorCase(spec={"type": "nadam", "momentum_decay": -1.0}, path="$.momentum_decay", match=">= 0"),
        ErrorCase(spec={"type": "rmsprop", "alpha": 1.5}, path="$.alpha", match=r"in \[0, 1\]"),
        ErrorCase(spec={"type": "rprop", "etas": [1.5, 1.2]}, path="$.etas[0]", match="etaminus must be < 1"),
        ErrorCase(spec={"type": "rprop", "step_sizes": [1.0, 0.1]}, path="$.step_sizes", match="min <= max"),
        ErrorCase(spec={"type": "sparse_adam", "eps": 0.0}, path="$.eps", match="> 0"),
    ]
