"""The parallelism contract: what a strategy does to a model, and what it tells optimizers.

A strategy applies torch.distributed's own machinery (DDP, FSDP2 ``fully_shard``, HSDP and tensor
parallel over a ``DeviceMesh``) to a model, and exposes its meshes **by role**, so any optimizer can
find the process groups it needs without the user wiring meshes by hand (the job OLMo-core's
``build_parallelism_config()`` does per optimizer, done once here):

- ``"replicate"``: ranks holding the same parameters and averaging gradients (DDP; HSDP's outer dim);
- ``"shard"``: ranks each holding a shard of every parameter (FSDP; HSDP's inner dim);
- ``"tp"``: ranks splitting single layers (tensor parallel).

``mesh(role)`` is that ``DeviceMesh`` (1-D) or ``None`` when the strategy has no such dimension.
Data parallelism is replicate x shard: ``data_parallel_rank`` / ``data_parallel_size`` say which
slice of a global batch this rank reads, and ``average_over_data_parallel(t)`` averages a per-rank
quantity (the loss of the local batch) so every rank agrees with one process on the global batch.

An optimizer reads the strategy from its build context (``OptimizerSpec.create(groups, context)``:
``context.strategy``). Elementwise updates need nothing: parameters sharded by FSDP / TP are
``DTensor``s and their gradients too, so an update written in tensor ops runs on the local shards,
and a reduction (a norm, a sum, an inner product) of DTensors gives the global value. An optimizer
that reads ``.to_local()`` must reduce over the role's group itself.

The core ships ``single`` (one process, model as is, every mesh ``None``); optreg-parallel ships
``ddp``, ``fsdp``, ``hsdp``, ``tp`` and ``fsdp_tp``. A third party's strategy subclasses
:class:`ParallelismStrategy` and overrides what it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["ROLES", "ParallelismStrategy", "initialize_state", "load_state_dicts", "state_dicts"]

#: The roles a strategy's meshes can have.
ROLES = ("replicate", "shard", "tp")


class ParallelismStrategy:
    """Base strategy: one process, the model unchanged, no device mesh."""

    #: The whole ``DeviceMesh`` of the strategy (all its dimensions), if any.
    device_mesh: Any = None

    def apply(self, model: Any) -> Any:
        """Return the model prepared for this strategy (wrapped, sharded, ...)."""
        return model

    def mesh(self, role: str) -> Any:
        """The 1-D ``DeviceMesh`` of ``role`` (see :data:`ROLES`), or ``None`` when the strategy has none."""
        _check_role(role)
        return None

    def process_group(self, role: str) -> Any:
        """The process group of ``role``'s mesh, or ``None``."""
        mesh = self.mesh(role)
        return None if mesh is None else mesh.get_group()

    @property
    def is_distributed(self) -> bool:
        """Whether this strategy runs on several processes."""
        return self.world_size > 1

    @property
    def rank(self) -> int:
        import torch.distributed as dist

        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def world_size(self) -> int:
        import torch.distributed as dist

        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def data_parallel_rank(self) -> int:
        """This rank's index among the data-parallel replicas (replicate x shard): which slice of a global batch."""
        index = 0
        for role in ("replicate", "shard"):
            mesh = self.mesh(role)
            if mesh is not None:
                index = index * mesh.size() + mesh.get_local_rank()
        return index

    @property
    def data_parallel_size(self) -> int:
        """How many slices a global batch is split into (1 without data parallelism)."""
        size = 1
        for role in ("replicate", "shard"):
            mesh = self.mesh(role)
            if mesh is not None:
                size *= mesh.size()
        return size

    def average_over_data_parallel(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the data-parallel ranks (the global batch's loss from each rank's own)."""
        if self.data_parallel_size == 1:
            return tensor
        import torch.distributed as dist

        out = tensor.detach().clone()
        for role in ("replicate", "shard"):
            group = self.process_group(role)
            if group is not None:
                dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out / self.data_parallel_size

    def close(self) -> None:
        """Release what the strategy set up (a process group it created)."""

    def describe(self) -> str:
        """One line for logs: the strategy and its mesh."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown mesh role {role!r}; the roles are {', '.join(ROLES)}")
    return role


# ---------------------------------------------------------------- checkpoints (torch.distributed.checkpoint)


def state_dicts(model: Any, optimizer: Any, *, full: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's and the optimizer's state dicts keyed by parameter FQN (torch.distributed.checkpoint's
    ``get_state_dict``): sharded (``full = False``: DTensors, for ``dcp.save``) or full (plain tensors, for
    ``torch.save`` and for loading on any number of ranks)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    _prime(optimizer)
    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=full))


def load_state_dicts(
    model: Any, optimizer: Any, model_state: dict[str, Any], optimizer_state: dict[str, Any], *, full: bool
) -> None:
    """Load FQN-keyed state dicts (from :func:`state_dicts` of a run on any number of ranks) into ``model``
    and ``optimizer``, resharding as this run's strategy shards them."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    options = StateDictOptions(full_state_dict=full)
    _prime(optimizer)
    if _holds_tensors(optimizer_state.get("state", {})):
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                       options=options)
        return
    # A stateless optimizer (SGD without momentum, signSGD) saves only its groups' options, which the spec
    # gives anyway; torch 2.13's set_state_dict fails on a full state without tensors: only the model loads.
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, model_state, options=options)


def _holds_tensors(state: Any) -> bool:
    import torch

    if isinstance(state, torch.Tensor):
        return state.dim() > 0
    if isinstance(state, Mapping):
        return any(_holds_tensors(v) for v in state.values())
    return False


def initialize_state(optimizer: Any) -> None:
    """Create an optimizer's state the way torch.distributed.checkpoint does before it loads into it: a step
    at LR 0 on zero gradients (nothing moves). Call it before anything that changes the optimizer's mode
    (a schedule-free ``eval()``): loading needs the state's layout, and its step a training-mode optimizer."""
    from torch.distributed.checkpoint.state_dict import _init_optim_state

    _prime(optimizer)
    _init_optim_state(optimizer)


def _prime(optimizer: Any) -> None:
    """torch.distributed.checkpoint initialises an optimizer without state with a step at LR 0 on zero
    gradients: entries a lookup left empty would make it believe the state exists (drop them), and an
    optimizer that takes the loss (MoMo) gets a zero loss for that step."""
    state = getattr(optimizer, "state", None)
    if state is None or _holds_tensors(dict(state)):
        return
    for key in [k for k, v in state.items() if not v]:
        del state[key]
    import torch

    from optreg.optim import give_loss

    give_loss(optimizer, torch.zeros(()))
