"""The conformance kit over every name of optreg-schedulefree and its main option combinations."""

from __future__ import annotations

import types
from typing import ClassVar

import attrs
import torch

import optreg
from optreg.optim import OptregOptimizer, gate_grad
from optreg.testing import ErrorCase, OptimizerCase, OptimizerConformance

BOTH = {"step_factor", "foreach"}


class TestScheduleFreeAdamW(OptimizerConformance):
    distribution = "optreg-schedulefree"
    cases = [
        OptimizerCase(spec={"type": "schedule_free_adamw", "lr": 0.01}, capabilities=BOTH),
        OptimizerCase(
            spec={"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.01, "warmup_steps": 5, "r": 0.5,
                  "weight_decay_at_y": False},
            capabilities=BOTH,
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "schedule_free_adamw", "betas": [0.0, 0.999]}, path="$.betas[0]", match="> 0"),
        ErrorCase(spec={"type": "schedule_free_adamw", "warmup_steps": -1}, path="$.warmup_steps", match=r"in \[0, "),
        ErrorCase(spec={"type": "schedule_free_adamw", "lr": -0.1}, path="$.lr", match=">= 0"),
    ]


class TestScheduleFreeSGD(OptimizerConformance):
    distribution = "optreg-schedulefree"
    cases = [
        OptimizerCase(spec={"type": "schedule_free_sgd", "lr": 0.1}, capabilities=BOTH,
                      descent={"rosenbrock": {"lr": 1e-3}}),
        OptimizerCase(
            spec={"type": "schedule_free_sgd", "lr": 0.1, "momentum": 0.95, "weight_decay": 1e-3, "warmup_steps": 3,
                  "weight_lr_power": 1.0},
            capabilities=BOTH,
            descent={"rosenbrock": {"lr": 1e-3}},
        ),
    ]
    error_cases = [
        ErrorCase(spec={"type": "schedule_free_sgd", "momentum": 0.0}, path="$.momentum", match=r"in \(0, 1\)"),
    ]


class TestScheduleFreeRAdam(OptimizerConformance):
    distribution = "optreg-schedulefree"
    cases = [
        OptimizerCase(
            spec={"type": "schedule_free_radam", "lr": 0.01},
            capabilities=BOTH,
            descent={"quadratic": {"lr": 0.1}},
            skip=dict.fromkeys(
                ("none_grads", "zero_size_and_frozen", "group_overrides", "add_param_group"),
                "with silent_sgd_phase RAdam takes no step while its variance estimate is intractable "
                "(rho_t <= 4: the first 4 steps) and this check runs 3; the silent_sgd_phase = false case runs it",
            ),
        ),
        OptimizerCase(
            spec={"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False, "weight_decay": 1e-3},
            capabilities=BOTH,
            descent={"quadratic": {"lr": 0.1}, "rosenbrock": {"lr": 1e-3}},
        ),
    ]


# A momentum-free SGD that supports step_factor, so the wrapper's step_factor path is checked too.
class GatedSGD(OptregOptimizer):
    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, {"lr": lr})

    def _step_group(self, group, step_factor, loss) -> None:
        for p in group["params"]:
            if p.grad is not None:
                dtype = p.real.dtype if p.is_complex() else p.dtype  # float64 params: a float64 step size
                step = torch.full((), -group["lr"], dtype=dtype, device=p.device)
                if step_factor is not None:
                    step = step * step_factor.to(p.device, dtype)
                p.addcmul_(gate_grad(p.grad, step_factor), step)


@attrs.frozen(kw_only=True)
class GatedSGDSpec(optreg.OptimizerSpec):
    """Test-only: plain SGD with step_factor support."""

    TYPE: ClassVar[str] = "test_gated_sgd"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"step_factor"})
    lr: float = optreg.field(0.1, ge=0)

    def param_state_layout(self, param, options):
        """No state: GatedSGD steps from the gradient alone."""
        return []

    def create(self, param_groups, context):
        return GatedSGD(param_groups, lr=self.lr)


@optreg.hookimpl
def optreg_register_optimizers(register) -> None:
    register(GatedSGDSpec)


TEST_PLUGIN = types.SimpleNamespace(
    __name__="schedulefree_test_plugin", optreg_register_optimizers=optreg_register_optimizers
)


class TestScheduleFreeWrapper(OptimizerConformance):
    distribution = "optreg-schedulefree"
    cases = [
        OptimizerCase(spec={"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.1}},
                      descent={"rosenbrock": {"inner": {"type": "sgd", "lr": 1e-3}}}),
        OptimizerCase(
            spec={"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.1, "weight_decay": 1e-3},
                  "momentum": 0.95, "weight_decay_at_y": 1e-3, "r": 1.0},
            descent={"rosenbrock": {"inner": {"type": "sgd", "lr": 1e-3}}},
            skip={
                "zero_grads": "weight_decay_at_y is the wrapper's own decay and moves the weights by design; "
                "the check turns off the inner optimizer's decay only. The other wrapper cases run it"
            },
        ),
        OptimizerCase(spec={"type": "schedule_free", "inner": {"type": "test_gated_sgd", "lr": 0.1}},
                      capabilities={"step_factor"}, descent={"rosenbrock": {"inner": {"type": "test_gated_sgd",
                                                                                        "lr": 1e-3}}}),
    ]
    error_cases = [
        ErrorCase(spec={"type": "schedule_free", "inner": {"type": "sgd", "momentum": 0.9}},
                  path="$.inner.momentum", match="set momentum = 0"),
        ErrorCase(
            spec={"type": "schedule_free", "inner": {"type": "sgd"},
                  "group_overrides": [{"params": ["fc1.*"], "momentum": 0.5}]},
            path="$.group_overrides[0]", match="replaces the base optimizer's momentum",
        ),
        ErrorCase(spec={"type": "schedule_free", "inner": {"type": "schedule_free_sgd"}}, path="$.inner",
                  match="already schedule-free"),
        ErrorCase(spec={"type": "schedule_free", "inner": {"type": "sgd"}, "momentum": 1.0}, path="$.momentum",
                  match=r"in \(0, 1\)"),
        ErrorCase(spec={"type": "schedule_free", "inner": {"type": "sgd", "lr": -1.0}}, path="$.inner.lr",
                  match=">= 0"),
    ]

    def make_registry(self) -> optreg.Registry:
        return optreg.Registry(plugins=[TEST_PLUGIN])
