"""The strategies' specs: what a ``[parallelism]`` table may say (no torch import: the registry loads this).

Every strategy runs under a launcher that starts one process per rank (``torchrun --nproc-per-node N``
or ``optreg train SPEC --nproc N``); the spec itself validates anywhere, ``optreg validate`` included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

import attrs

import optreg

if TYPE_CHECKING:
    from torch import nn

    from optreg.parallel import ParallelismStrategy

__all__ = ["ALL_SPECS", "DDPSpec", "FSDPSpec", "FSDPTPSpec", "HSDPSpec", "TPSpec"]

Backend = Literal["auto", "gloo", "nccl"]
DType = Literal["float32", "bfloat16", "float16"]
TPStyle = Literal["colwise", "rowwise", "sequence_parallel"]


def _backend_field() -> Backend:
    return optreg.field(
        "auto", per_group=False,
        doc="Process-group backend: `auto` is nccl when training on CUDA, gloo on CPU.",
    )


@attrs.frozen(kw_only=True)
class _Distributed(optreg.ParallelismSpec):
    """Shared options: the backend and how long a collective may wait."""

    backend: Backend = _backend_field()
    timeout_s: int = optreg.field(600, ge=1, le=86_400, doc="Seconds a collective may wait before failing.")


@attrs.frozen(kw_only=True)
class DDPSpec(_Distributed):
    """Distributed data parallel: every rank holds the whole model; gradients are averaged (all-reduce).

    ``torch.nn.parallel.DistributedDataParallel`` with its usual options. Each rank reads its own
    slice of the global batch (global batch = ``batch_size`` x ranks).
    """

    TYPE: ClassVar[str] = "ddp"
    PAPER: ClassVar[str] = "Li et al. 2020, PyTorch Distributed: Experiences on Accelerating Data Parallel Training"

    bucket_cap_mb: float = optreg.field(25.0, gt=0, le=10_000, doc="Gradient bucket size (MiB) of the all-reduce.")
    static_graph: bool = optreg.field(False, doc="The graph (used parameters) is the same every step.")
    find_unused_parameters: bool = optreg.field(
        False, doc="Look for parameters that get no gradient in a step (costs a graph traversal per step)."
    )
    gradient_as_bucket_view: bool = optreg.field(False, doc="Gradients are views into the buckets (saves memory).")

    def create(self) -> ParallelismStrategy:
        from optreg_parallel.strategies import DDPStrategy

        return DDPStrategy(self)


@attrs.frozen(kw_only=True)
class _Sharded(_Distributed):
    """FSDP2 options shared by fsdp, hsdp and fsdp_tp."""

    shard_modules: tuple[str, ...] = optreg.field(
        (),
        doc="Modules that get their own shard unit: globs over module FQNs (`blocks.*`) or class names "
        "(`Block`); by default every element of a ModuleList named blocks/layers/h and every module whose "
        "class name ends in Block or Layer. The root is always wrapped, last.",
    )
    reshard_after_forward: bool = optreg.field(
        True, doc="Free the gathered parameters after forward (more communication, less memory)."
    )
    param_dtype: DType | None = optreg.field(None, doc="Mixed precision: the dtype of gathered params in forward.")
    reduce_dtype: DType | None = optreg.field(None, doc="Mixed precision: the dtype gradients are reduced in.")
    cpu_offload: bool = optreg.field(False, doc="Keep sharded params, grads and optimizer state on the CPU.")

    def local_shapes(self, model: nn.Module, world_size: int) -> dict[str, tuple[int, ...]]:
        """Every parameter chunked on dim 0 over the ranks (rank 0's chunk)."""
        from optreg_parallel.strategies import sharded_shapes

        return sharded_shapes(model, shard=world_size)


@attrs.frozen(kw_only=True)
class FSDPSpec(_Sharded):
    """Fully sharded data parallel (FSDP2 ``fully_shard``): every rank holds a shard of every parameter.

    Parameters, gradients and optimizer state are ``DTensor``s sharded on dim 0 over all ranks;
    parameters are gathered for each unit's forward and backward, gradients reduce-scattered.
    """

    TYPE: ClassVar[str] = "fsdp"
    PAPER: ClassVar[str] = "Zhao et al. 2023, PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel"

    def create(self) -> ParallelismStrategy:
        from optreg_parallel.strategies import FSDPStrategy

        return FSDPStrategy(self)


@attrs.frozen(kw_only=True)
class HSDPSpec(_Sharded):
    """Hybrid sharded data parallel: a 2-D mesh, FSDP within a shard group, replicas across groups.

    ``replicate`` x ``shard`` must equal the number of ranks; give one and the other is inferred.
    """

    TYPE: ClassVar[str] = "hsdp"
    PAPER: ClassVar[str] = "Zhao et al. 2023, PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel"

    replicate: int | None = optreg.field(None, ge=1, le=65_536, doc="Replica groups (the outer mesh dim).")
    shard: int | None = optreg.field(None, ge=1, le=65_536, doc="Ranks sharing one replica (the inner mesh dim).")

    def __attrs_post_init__(self) -> None:
        if self.replicate is None and self.shard is None:
            raise optreg.FieldValueError("shard", "give `shard` or `replicate` (or both); the other is inferred")

    def local_shapes(self, model: nn.Module, world_size: int) -> dict[str, tuple[int, ...]]:
        """Every parameter chunked on dim 0 over the ranks of one shard group."""
        from optreg_parallel.strategies import _hsdp_sizes, sharded_shapes

        _, shard = _hsdp_sizes(world_size, self.replicate, self.shard)
        return sharded_shapes(model, shard=shard)

    def create(self) -> ParallelismStrategy:
        from optreg_parallel.strategies import FSDPStrategy

        return FSDPStrategy(self, replicate=self.replicate, shard=self.shard)


_EMPTY_PLAN = 'give at least one glob -> style, e.g. plan = { "*.mlp_in" = "colwise", "*.mlp_out" = "rowwise" }'


def _plan_field() -> Mapping[str, TPStyle]:
    return attrs.field(
        factory=dict,
        hash=False,
        metadata={
            "doc": "Tensor-parallel plan: globs over module FQNs -> `colwise` (shard the output features), "
            "`rowwise` (shard the input features; follows a colwise layer) or `sequence_parallel` "
            "(norms and dropout on sequence shards). Modules no glob matches stay replicated.",
            "bounds": {},
            "per_group": True,
            "kwarg": True,
        },
    )


@attrs.frozen(kw_only=True)
class TPSpec(_Distributed):
    """Tensor parallel over all ranks (``parallelize_module``): single layers split across ranks.

    Every rank reads the same batch; the matched layers' weights are ``DTensor``s sharded by rows
    (colwise) or columns (rowwise). A colwise layer's output feeds a rowwise layer (a transformer's
    MLP: ``mlp_in`` colwise, ``mlp_out`` rowwise).
    """

    TYPE: ClassVar[str] = "tp"
    PAPER: ClassVar[str] = "Shoeybi et al. 2019, Megatron-LM: Training Multi-Billion Parameter Language Models"

    plan: Mapping[str, TPStyle] = _plan_field()

    def __attrs_post_init__(self) -> None:
        if not self.plan:
            raise optreg.FieldValueError("plan", _EMPTY_PLAN)

    def local_shapes(self, model: nn.Module, world_size: int) -> dict[str, tuple[int, ...]]:
        """The planned layers split over the ranks (colwise on dim 0, rowwise on dim 1); the rest whole."""
        from optreg_parallel.strategies import sharded_shapes

        return sharded_shapes(model, tp=world_size, plan=dict(self.plan))

    def create(self) -> ParallelismStrategy:
        from optreg_parallel.strategies import TPStrategy

        return TPStrategy(self)


@attrs.frozen(kw_only=True)
class FSDPTPSpec(_Sharded):
    """FSDP over a data-parallel dim and tensor parallel over another: a 2-D mesh (dp x tp).

    ``tp`` ranks split each planned layer; the ``ranks / tp`` data-parallel groups shard the rest.
    """

    TYPE: ClassVar[str] = "fsdp_tp"
    PAPER: ClassVar[str] = "Shoeybi et al. 2019, Megatron-LM; Zhao et al. 2023, PyTorch FSDP"

    tp: int = optreg.field(2, ge=1, le=65_536, doc="Tensor-parallel degree (the inner mesh dim).")
    plan: Mapping[str, TPStyle] = _plan_field()

    def __attrs_post_init__(self) -> None:
        if not self.plan:
            raise optreg.FieldValueError("plan", _EMPTY_PLAN)

    def local_shapes(self, model: nn.Module, world_size: int) -> dict[str, tuple[int, ...]]:
        """The planned layers split over the ``tp`` ranks, then every parameter chunked on dim 0 over the
        ``ranks / tp`` data-parallel ranks."""
        from optreg_parallel.strategies import sharded_shapes

        if world_size % self.tp:
            raise optreg.SpecError(f"tp = {self.tp} does not divide the {world_size} ranks", path="$.tp")
        return sharded_shapes(model, shard=world_size // self.tp, tp=self.tp, plan=dict(self.plan))

    def create(self) -> ParallelismStrategy:
        from optreg_parallel.strategies import FSDPStrategy

        return FSDPStrategy(self, tp=self.tp, plan=dict(self.plan))


#: Every spec class of this family; plugin.py registers each with the hook of its kind.
ALL_SPECS: tuple[type, ...] = (DDPSpec, FSDPSpec, HSDPSpec, TPSpec, FSDPTPSpec)
