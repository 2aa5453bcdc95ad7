"""The strategies: torch.distributed's DDP, FSDP2 (``fully_shard``), HSDP and tensor parallel, over a DeviceMesh.

Each strategy joins the process group a launcher set up the environment for (``torchrun``, or
``optreg train SPEC --nproc N``), builds its ``DeviceMesh`` with one named dimension per role
(``replicate``, ``shard``, ``tp``: see :mod:`optreg.parallel`), applies itself to the model and
answers ``mesh(role)`` for optimizers.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from optreg.errors import SpecError
from optreg.parallel import ParallelismStrategy

__all__ = ["DDPStrategy", "FSDPStrategy", "TPStrategy", "launch_hint"]

_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Names of module lists whose elements are a model's repeated blocks (default FSDP units).
_BLOCK_LISTS = frozenset({"blocks", "layers", "h", "layer", "encoder_layers", "decoder_layers"})


#: Whether a strategy of this process initialised the default process group (any strategy may close it).
_CREATED_GROUP = False


def launch_hint(strategy: str) -> str:
    return (
        f"the `{strategy}` strategy runs one process per rank: launch it with "
        f"`optreg train SPEC --nproc N`, or `torchrun --nproc-per-node N -m optreg train SPEC` "
        "(torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT), or call it from your own script "
        "started by torchrun"
    )


class _Distributed(ParallelismStrategy):
    """Joins (or creates) the default process group and keeps the meshes by role."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._meshes: dict[str, Any] = {}
        self.device_mesh = None
        self._join()
        self.device = self._device()

    # -- the process group

    def _join(self) -> None:
        if dist.is_available() and dist.is_initialized():
            return
        missing = [v for v in _LAUNCH_VARIABLES if v not in os.environ]
        if missing:
            raise SpecError(f"{launch_hint(self.spec.TYPE)}; not set here: {', '.join(missing)}", path="$.type")
        backend = self.spec.backend
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl" and not torch.cuda.is_available():
            raise SpecError("backend 'nccl' needs CUDA devices; use 'gloo' (or 'auto') on CPU", path="$.backend")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=self.spec.timeout_s))
        global _CREATED_GROUP
        _CREATED_GROUP = True

    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")

    def _init_mesh(self, shape: tuple[int, ...], names: tuple[str, ...]) -> Any:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(self.device.type, shape, mesh_dim_names=names)
        self.device_mesh = mesh
        for name in names:
            self._meshes[name] = mesh[name] if len(names) > 1 else mesh
        return mesh

    # -- the contract

    def mesh(self, role: str) -> Any:
        super().mesh(role)  # validates the role
        return self._meshes.get(role)

    def close(self) -> None:
        """Destroy the process groups if a strategy of this process created them (a launcher's own stay):
        gloo's threads then stop while Python is alive, not at interpreter exit, where they can abort."""
        global _CREATED_GROUP
        if _CREATED_GROUP and dist.is_initialized():
            dist.destroy_process_group()
        _CREATED_GROUP = False

    def describe(self) -> str:
        dims = ", ".join(f"{name} {mesh.size()}" for name, mesh in self._meshes.items())
        return f"{self.spec.TYPE} on {self.world_size} ranks ({dims}; {dist.get_backend()}, {self.device.type})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class DDPStrategy(_Distributed):
    """``DistributedDataParallel``: the model replicated on every rank, gradients all-reduced (averaged)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._init_mesh((self.world_size,), ("replicate",))

    def apply(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        model = model.to(self.device)
        return DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            process_group=self.process_group("replicate"),
            bucket_cap_mb=self.spec.bucket_cap_mb,
            static_graph=self.spec.static_graph,
            find_unused_parameters=self.spec.find_unused_parameters,
            gradient_as_bucket_view=self.spec.gradient_as_bucket_view,
        )


class TPStrategy(_Distributed):
    """Tensor parallel over every rank: the planned layers split, the rest replicated."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._init_mesh((self.world_size,), ("tp",))

    def apply(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        apply_tp_plan(model, self.mesh("tp"), self.spec.plan)
        return model


class FSDPStrategy(_Distributed):
    """FSDP2 ``fully_shard`` per unit, root last; HSDP with ``replicate`` / ``shard``; FSDP + TP with ``tp``."""

    def __init__(self, spec: Any, *, replicate: int | None = None, shard: int | None = None, tp: int | None = None,
                 plan: dict[str, str] | None = None) -> None:
        super().__init__(spec)
        self.plan = plan
        world = self.world_size
        if tp is not None:
            if world % tp:
                raise SpecError(f"tp = {tp} does not divide the {world} ranks", path="$.tp")
            self._init_mesh((world // tp, tp), ("shard", "tp"))
            self._fsdp_mesh = self.mesh("shard")
        elif replicate is not None or shard is not None:
            replicate, shard = _hsdp_sizes(world, replicate, shard)
            mesh = self._init_mesh((replicate, shard), ("replicate", "shard"))
            self._fsdp_mesh = mesh
        else:
            self._fsdp_mesh = self._init_mesh((world,), ("shard",))

    def apply(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        model = model.to(self.device)
        if self.plan:
            apply_tp_plan(model, self.mesh("tp"), self.plan)
        spec = self.spec
        options: dict[str, Any] = {
            "mesh": self._fsdp_mesh,
            "reshard_after_forward": spec.reshard_after_forward,
            "offload_policy": CPUOffloadPolicy() if spec.cpu_offload else OffloadPolicy(),
        }
        if spec.param_dtype is not None or spec.reduce_dtype is not None:
            options["mp_policy"] = MixedPrecisionPolicy(
                param_dtype=_DTYPES.get(spec.param_dtype), reduce_dtype=_DTYPES.get(spec.reduce_dtype)
            )
        for _, module in shard_units(model, spec.shard_modules):
            fully_shard(module, **options)
        fully_shard(model, **options)
        return model


def _hsdp_sizes(world: int, replicate: int | None, shard: int | None) -> tuple[int, int]:
    if replicate is None:
        assert shard is not None
        if world % shard:
            raise SpecError(f"shard = {shard} does not divide the {world} ranks", path="$.shard")
        replicate = world // shard
    if shard is None:
        if world % replicate:
            raise SpecError(f"replicate = {replicate} does not divide the {world} ranks", path="$.replicate")
        shard = world // replicate
    if replicate * shard != world:
        raise SpecError(f"replicate x shard = {replicate} x {shard} = {replicate * shard}, but there are {world} "
                        "ranks", path="$.shard")
    return replicate, shard


def shard_units(model: nn.Module, globs: tuple[str, ...] = ()) -> list[tuple[str, nn.Module]]:
    """The modules that get their own FSDP unit, innermost first (never the root, which is wrapped last).

    ``globs`` match module FQNs (fnmatch) or class names; a glob that matches nothing is a SpecError.
    Without globs: every element of a ModuleList named blocks / layers / h, and every module whose class
    name ends in ``Block`` or ``Layer``.
    """
    named = [(name, module) for name, module in model.named_modules() if name]
    if globs:
        chosen = []
        for i, glob in enumerate(globs):
            hits = [(n, m) for n, m in named if fnmatch.fnmatchcase(n, glob) or type(m).__name__ == glob]
            if not hits:
                sample = ", ".join(n for n, _ in named[:6])
                raise SpecError(f"{glob!r} matches no module (FQNs look like: {sample}; or give a class name)",
                                path=f"$.shard_modules[{i}]")
            chosen += hits
    else:
        lists = {name for name, m in named if isinstance(m, nn.ModuleList) and name.rsplit(".", 1)[-1] in _BLOCK_LISTS}
        chosen = [
            (n, m) for n, m in named
            if n.rpartition(".")[0] in lists or type(m).__name__.endswith(("Block", "Layer"))
        ]
    unique = {id(m): (n, m) for n, m in chosen}
    # innermost first: a unit inside another is sharded before its parent
    return sorted(unique.values(), key=lambda item: -item[0].count("."))


def _check_divisible(name: str, module: nn.Module, style: str, tp: int, glob: str) -> None:
    """Tensor parallel splits a colwise layer's outputs and a rowwise layer's inputs in equal parts."""
    weight = getattr(module, "weight", None)
    if style == "sequence_parallel" or weight is None or weight.ndim != 2:
        return
    dim = 0 if style == "colwise" else 1
    if weight.shape[dim] % tp:
        what = "output features" if style == "colwise" else "input features"
        raise SpecError(
            f"{name} has {weight.shape[dim]} {what}, which {tp} tensor-parallel ranks cannot split evenly "
            f"({style} needs a multiple of {tp}); leave it out of the plan or change the tp degree",
            path=f"$.plan[{glob!r}]",
        )


def apply_tp_plan(model: nn.Module, mesh: Any, plan: dict[str, str]) -> None:
    """``parallelize_module`` with the plan's globs expanded over the model's module FQNs."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel, "sequence_parallel": SequenceParallel}
    modules = dict(model.named_modules())
    names = [name for name in modules if name]
    expanded: dict[str, Any] = {}
    for glob, style in plan.items():
        hits = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        if not hits:
            sample = ", ".join(names[:6])
            raise SpecError(f"{glob!r} matches no module (FQNs look like: {sample})", path=f"$.plan[{glob!r}]")
        for name in hits:
            _check_divisible(name, modules[name], style, mesh.size(), glob)
            expanded[name] = styles[style]()
    parallelize_module(model, mesh, expanded)


def sharded_shapes(model: nn.Module, *, shard: int = 1, tp: int = 1, plan: dict[str, str] | None = None
                   ) -> dict[str, tuple[int, ...]]:
    """Rank 0's local shape of every parameter: tensor parallel first (colwise splits a layer's weight and
    bias on dim 0, rowwise its weight on dim 1), then FSDP2's dim-0 chunk over ``shard`` ranks; rank 0
    holds the largest piece (``torch.chunk``). What the optimizer-state estimate counts per rank."""

    def chunk(size: int, parts: int) -> int:
        return -(-size // parts) if parts > 1 else size

    split: dict[str, int] = {}  # param FQN -> the dim tensor parallel splits
    if plan and tp > 1:
        modules = dict(model.named_modules())
        for glob, style in plan.items():
            for name in (n for n in modules if n and fnmatch.fnmatchcase(n, glob)):
                if style == "colwise":
                    split.update({f"{name}.weight": 0, f"{name}.bias": 0})
                elif style == "rowwise":
                    split[f"{name}.weight"] = 1
    out = {}
    for fqn, param in model.named_parameters():
        shape = list(param.shape)
        if fqn in split and len(shape) > split[fqn]:
            shape[split[fqn]] = chunk(shape[split[fqn]], tp)
        if shard > 1 and shape:
            shape[0] = chunk(shape[0], shard)
        if shape != list(param.shape):
            out[fqn] = tuple(shape)
    return out

