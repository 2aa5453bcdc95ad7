"""Spec classes and plugin objects used by the core's own tests (never installed)."""

from __future__ import annotations

import types
from typing import Any, ClassVar, Literal

import attrs
import torch

import optreg
from optreg import FieldValueError, OptimizerSpec, field


@attrs.frozen(kw_only=True)
class TorchAdamSpec(OptimizerSpec):
    """torch.optim.Adam, to exercise tuples, bools and Optional fields in specs."""

    TYPE: ClassVar[str] = "torch_adam"
    ALIASES: ClassVar[tuple[str, ...]] = ("tadam",)

    lr: float = field(1e-3, ge=0)
    betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1)
    eps: float = field(1e-8, gt=0)
    weight_decay: float = field(0.0, ge=0)
    amsgrad: bool = field(False)
    foreach: bool | None = field(None, per_group=False)

    def param_state_layout(self, param, options):
        """Adam's two moments and a float32 step counter; the running maximum with amsgrad."""
        from optreg.memory import scalar

        extra = [param.like("max_exp_avg_sq")] if options["amsgrad"] else []
        return [scalar("step"), param.like("exp_avg"), param.like("exp_avg_sq"), *extra]

    def create(self, param_groups, context):
        return torch.optim.Adam(param_groups, **self.optimizer_kwargs())


@attrs.frozen(kw_only=True)
class IntsAndChoicesSpec(OptimizerSpec):
    """Fields of every scalar kind, for strictness tests."""

    TYPE: ClassVar[str] = "kinds"

    lr: float = field(0.1, ge=0)
    steps: int = field(5, ge=1)
    mode: Literal["fast", "exact"] = field("fast")
    coefficients: str | tuple[float, float, float] = field("muon")
    schedule: tuple[tuple[float, float, float], ...] = field(())
    label: str | None = field(None)

    def __attrs_post_init__(self) -> None:
        if self.mode == "exact" and self.steps < 3:
            raise FieldValueError("steps", "mode 'exact' needs steps >= 3")

    def create(self, param_groups, context):
        return torch.optim.SGD(param_groups, lr=self.lr)


@attrs.frozen(kw_only=True)
class WrapperSpec(optreg.WrapperSpec):
    """A wrapper holding any registered optimizer as `inner` (like skip-step or Mechanic)."""

    TYPE: ClassVar[str] = "wrapper"

    patience: int = field(3, ge=0, le=1000, per_group=False)  # bounded: the kit checks every integer

    def wrap(self, inner, context):
        return inner


@attrs.frozen(kw_only=True)
class RoutedSpec(OptimizerSpec):
    """Matrices and everything else on different algorithms in one optimizer (as Muon does)."""

    TYPE: ClassVar[str] = "routed"

    lr: float = field(0.02, ge=0)
    other_lr: float = field(0.001, ge=0)
    weight_decay: float = field(0.0, ge=0)

    def role_options(self, role: str) -> dict[str, Any]:
        if role == "matrix":
            return {"algorithm": "matrix_update"}
        return {"algorithm": "elementwise", "lr": self.other_lr}

    def create(self, param_groups, context):
        return torch.optim.SGD(param_groups, lr=self.lr, weight_decay=self.weight_decay)


@attrs.frozen(kw_only=True)
class RunTable:
    """A plugin's top-level table (``[run]``), as the main job's ``[train]``: it knows the run's length."""

    steps: int = field(10, ge=1, doc="Optimizer steps.")
    tokens_per_step: int = field(64, ge=1, doc="Tokens one step consumes.")

    def run_length(self, units: str, data_parallel_size: int = 1) -> int:
        return self.steps if units == "steps" else self.steps * self.tokens_per_step * data_parallel_size


@optreg.hookimpl
def _register_run_table(register) -> None:
    register("run", RunTable)


def plugin_with(*classes: type, tables: bool = True) -> types.SimpleNamespace:
    """A plugin object registering ``classes`` as optimizers (and the ``[run]`` table unless told not to)."""

    @optreg.hookimpl
    def optreg_register_optimizers(register) -> None:
        for cls in classes:
            register(cls)

    hooks = {"optreg_register_optimizers": optreg_register_optimizers}
    if tables:
        hooks["optreg_register_tables"] = _register_run_table
    return types.SimpleNamespace(__name__="test_plugin", **hooks)


def make_registry(*extra: Any) -> optreg.Registry:
    """An isolated registry: built-ins plus the test specs (no installed plugins)."""
    return optreg.Registry(
        plugins=[plugin_with(TorchAdamSpec, IntsAndChoicesSpec, WrapperSpec, RoutedSpec), *extra],
        entry_points=False,
    )

