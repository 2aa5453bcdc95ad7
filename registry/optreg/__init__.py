"""optreg: a plugin-based registry of PyTorch optimizers, LR schedulers and parallelism strategies.

Declare a run in TOML, install algorithm families as plugins, look them up by
name::

    import optreg
    spec = optreg.load_spec("specs/adamw_cosine.toml")
    built = spec.build(model)          # optimizer, scheduler, strategy, model

Importing optreg loads no plugin; :func:`get_registry` does, on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from optreg.describe import describe
from optreg.errors import PluginError, SpecError
from optreg.groups import ParamNamesWarning
from optreg.hookspecs import hookimpl, hookspec
from optreg.loading import dump_spec, load_spec, parse_spec
from optreg.registry import PluginInfo, Registry, get_registry, reset_registry
from optreg.runspec import RunSpec
from optreg.specs import (
    ROLES,
    BuildContext,
    FieldTypeError,
    FieldValueError,
    FieldValueErrors,
    GroupOverride,
    OptimizerSpec,
    ParallelismSpec,
    SchedulerSpec,
    Spec,
    WrapperSpec,
    field,
)

if TYPE_CHECKING:
    import torch

__version__ = "0.1.0"

__all__ = [
    "BuildContext",
    "FieldTypeError",
    "FieldValueError",
    "FieldValueErrors",
    "GroupOverride",
    "OptimizerSpec",
    "ParamNamesWarning",
    "ParallelismSpec",
    "PluginError",
    "PluginInfo",
    "ROLES",
    "Registry",
    "RunSpec",
    "SchedulerSpec",
    "Spec",
    "SpecError",
    "WrapperSpec",
    "__version__",
    "build_optimizer",
    "build_scheduler",
    "describe",
    "dump_spec",
    "field",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_spec",
    "parse_spec",
    "reset_registry",
]


def build_optimizer(
    spec: OptimizerSpec | Mapping[str, Any], model_or_params: Any, *, registry: Registry | None = None, **kwargs: Any
) -> torch.optim.Optimizer:
    """Build a ``torch.optim.Optimizer`` from a spec, a dict or a TOML table.

    ``model_or_params`` is an ``nn.Module`` (FQNs drive groups and roles) or an
    iterable of tensors / ``(name, tensor)`` pairs / param-group dicts.
    """
    return (registry or get_registry()).build_optimizer(spec, model_or_params, **kwargs)


def build_scheduler(
    spec: SchedulerSpec | Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    t_max: int | None = None,
    registry: Registry | None = None,
):
    """Build a ``torch.optim.lr_scheduler.LRScheduler`` driving ``optimizer`` from a schedule spec."""
    return (registry or get_registry()).build_scheduler(spec, optimizer, t_max=t_max)
