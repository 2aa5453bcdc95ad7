"""The optimizer state a spec will allocate, known from shapes before anything is allocated.

Each optimizer spec declares its state layout once (:meth:`optreg.OptimizerSpec.param_state_layout`
for the state kept per parameter, :meth:`~optreg.OptimizerSpec.shared_state_layout` for state kept once
per optimizer or per group); :func:`estimate_state` applies it to a model's parameters (their local
shard under a parallelism strategy) and sums the bytes per param group, per dtype and per family.
``optreg validate SPEC --model ...`` prints it, ``optreg train`` refuses a run whose state would not fit
the available memory, ``optreg bench`` counts bytes touched from it, and the conformance kit checks that
it equals the state an optimizer holds after a step (:func:`measured_state_bytes`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import torch

    from optreg.specs import OptimizerSpec

__all__ = [
    "GroupShape",
    "ParamShape",
    "StateEntry",
    "StateEstimate",
    "StateLayoutNotDeclared",
    "StateTensor",
    "available_memory",
    "estimate_state",
    "format_bytes",
    "local_shard",
    "measured_state_bytes",
    "scalar",
]


class StateLayoutNotDeclared(NotImplementedError):
    """An optimizer spec that does not declare its state layout: its state cannot be estimated."""


def _dtype(value: Any) -> torch.dtype:
    import torch

    if isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{value!r} is not a torch dtype")
    return dtype


@attrs.frozen
class StateTensor:
    """One state tensor an optimizer keeps: its name, shape (on this rank) and dtype.

    ``grows``: the tensor reaches this size only after several steps (a history such as L-BFGS'), so
    the estimate is an upper bound of it; ``count`` repeats it (a history of ``count`` vectors).
    """

    name: str
    shape: tuple[int, ...] = attrs.field(converter=tuple)
    dtype: torch.dtype = attrs.field(converter=_dtype)
    grows: bool = False
    count: int = 1

    @property
    def numel(self) -> int:
        return math.prod(self.shape) * self.count

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def scalar(name: str, dtype: Any = "float32") -> StateTensor:
    """A 0-dim state tensor (a step counter kept as a tensor, a scalar estimate)."""
    return StateTensor(name, (), dtype)


@attrs.frozen
class ParamShape:
    """What a state layout knows of a parameter: its FQN, role, global and local shapes and dtype.

    ``local_shape`` is this rank's shard (equal to ``shape`` without sharding): state made with
    ``zeros_like(param)`` has it.
    """

    fqn: str
    shape: tuple[int, ...] = attrs.field(converter=tuple)
    dtype: torch.dtype = attrs.field(converter=_dtype)
    local_shape: tuple[int, ...] = attrs.field(converter=tuple)
    role: str = "matrix"

    @local_shape.default
    def _local_shape_default(self) -> tuple[int, ...]:
        return tuple(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.local_shape)

    def like(self, name: str, dtype: Any = None) -> StateTensor:
        """A state tensor shaped like this parameter's local shard (``zeros_like(param)``), in ``dtype`` or
        the parameter's own."""
        return StateTensor(name, self.local_shape, self.dtype if dtype is None else dtype)


@attrs.frozen
class GroupShape:
    """A param group as a layout sees it: its name, members and every option (spec defaults included)."""

    name: str
    params: tuple[ParamShape, ...]
    options: Mapping[str, Any]


@attrs.frozen
class StateEntry:
    """One row of an estimate: which optimizer (``owner``, its type) keeps ``tensor`` for which param group
    and parameter (``param`` is ``None`` for state kept once per group or optimizer)."""

    owner: str
    group: str
    param: str | None
    tensor: StateTensor

    @property
    def nbytes(self) -> int:
        return self.tensor.nbytes


@attrs.frozen
class StateEstimate:
    """The optimizer state a spec allocates for a model, on one rank, before anything is allocated.

    ``undeclared`` lists optimizer types whose spec declares no layout (their state is not counted and
    :attr:`complete` is false). ``world_size`` is the number of ranks of the run, ``sharded`` whether its
    strategy shards the parameters over them (else each rank holds all of this).
    """

    optimizer: str
    entries: tuple[StateEntry, ...]
    undeclared: tuple[str, ...] = ()
    world_size: int = 1
    families: Mapping[str, str] = attrs.field(factory=dict)
    sharded: bool = False

    @property
    def complete(self) -> bool:
        return not self.undeclared

    @property
    def total_bytes(self) -> int:
        """Bytes of every state tensor at its largest (histories full)."""
        return sum(e.nbytes for e in self.entries)

    @property
    def first_step_bytes(self) -> int:
        """Bytes held once the first step has run (a growing history counted empty)."""
        return sum(e.nbytes for e in self.entries if not e.tensor.grows)

    def _sum_by(self, key: Callable[[StateEntry], str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.entries:
            out[key(entry)] = out.get(key(entry), 0) + entry.nbytes
        return out

    def by_group(self) -> dict[str, int]:
        """Bytes per param group (state kept once per optimizer under ``"(optimizer)"``)."""
        return self._sum_by(lambda e: e.group)

    def by_dtype(self) -> dict[str, int]:
        """Bytes per dtype (``"float32"``, ``"bfloat16"``, ...)."""
        return self._sum_by(lambda e: str(e.tensor.dtype).removeprefix("torch."))

    def by_optimizer(self) -> dict[str, int]:
        """Bytes per optimizer type (a wrapper's own state apart from its inner optimizer's)."""
        return self._sum_by(lambda e: e.owner)

    def by_family(self) -> dict[str, int]:
        """Bytes per plugin family (the plugin that registers each optimizer type)."""
        return self._sum_by(lambda e: self.families.get(e.owner, e.owner))

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data."""
        return {
            "optimizer": self.optimizer,
            "world_size": self.world_size,
            "total_bytes": self.total_bytes,
            "first_step_bytes": self.first_step_bytes,
            "complete": self.complete,
            "undeclared": list(self.undeclared),
            "by_family": self.by_family(),
            "by_group": self.by_group(),
            "by_dtype": self.by_dtype(),
        }

    def lines(self) -> list[str]:
        """Human-readable lines: the total, then bytes per family, param group and dtype."""
        where = ""
        if self.world_size > 1:
            where = f" per rank ({'sharded over' if self.sharded else 'the same on each of'} {self.world_size} ranks)"
        total = format_bytes(self.total_bytes)
        if self.first_step_bytes != self.total_bytes:
            total += f" at most ({format_bytes(self.first_step_bytes)} after the first step; the history grows)"
        out = [f"optimizer state{where}: {total}"]
        for title, parts in (("family", self.by_family()), ("param group", self.by_group()),
                             ("dtype", self.by_dtype())):
            if len(parts) > 1 or title == "param group":
                out.append(f"  by {title}: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items()))
        for name in self.undeclared:
            out.append(f"  {name}: declares no state layout, its state is not counted")
        return out


def format_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``None`` -> ``"-"``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - the loop always returns


def local_shard(t: Any) -> Any:
    """This rank's shard of a DTensor (``to_local()``), or the tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def param_shape(fqn: str, param: Any, role: str = "matrix",
                shard: Callable[[str, tuple[int, ...]], tuple[int, ...]] | None = None) -> ParamShape:
    """The :class:`ParamShape` of a tensor (a DTensor gives its local shard; ``shard`` maps FQN and global
    shape to a simulated local shape)."""
    shape = tuple(param.shape)
    local = shard(fqn, shape) if shard is not None else tuple(local_shard(param).shape)
    return ParamShape(fqn, shape, param.dtype, local, role)


def estimate_state(
    spec: OptimizerSpec,
    model_or_params: Any,
    *,
    shard: Callable[[str, tuple[int, ...]], tuple[int, ...]] | None = None,
    world_size: int = 1,
    sharded: bool | None = None,
    families: Mapping[str, str] | None = None,
) -> StateEstimate:
    """The optimizer state ``spec`` allocates for ``model_or_params``, from shapes only.

    The param groups are planned as :meth:`~optreg.OptimizerSpec.build` plans them (roles, overrides,
    no-decay), each group's options are the spec's own overlaid with the group's, and the spec's layout
    gives the state tensors. Sharded parameters (DTensors) count their local shard; ``shard`` simulates
    a strategy's sharding (FQN, global shape -> local shape) for parameters that are not sharded yet.
    ``world_size`` and ``sharded`` describe the run for the report (``sharded`` defaults to whether any
    parameter's local shape differs from its shape). ``families`` maps optimizer types to their plugin's
    name (default: looked up in the registry).
    """
    from optreg.groups import plan_groups

    planned = plan_groups(spec, model_or_params)
    defaults = spec.group_option_spec().optimizer_kwargs()
    groups = [
        GroupShape(
            g.name,
            tuple(param_shape(m.fqn, m.param, m.role, shard) for m in g.members),
            {**defaults, **g.options},
        )
        for g in planned
    ]
    entries, undeclared = collect_layout(spec, groups)
    if families is None:
        families = _families(spec)
    if sharded is None:
        sharded = any(p.local_shape != p.shape for g in groups for p in g.params)
    return StateEstimate(spec.TYPE, tuple(entries), tuple(undeclared), world_size, dict(families), sharded)


def collect_layout(spec: OptimizerSpec, groups: Sequence[GroupShape]) -> tuple[list[StateEntry], list[str]]:
    """Every state tensor ``spec`` (and, for a wrapper, its inner optimizers) keeps for ``groups``, and the
    optimizer types that declare no layout."""
    from optreg.specs import WrapperSpec

    entries, undeclared = [], []
    for owner in _chain(spec):
        try:
            entries += owner.own_state_layout(groups)
        except StateLayoutNotDeclared:
            undeclared.append(owner.TYPE)
        if isinstance(owner, WrapperSpec):  # what the inner optimizer sees (GaLore: projected gradients)
            groups = owner.inner_groups(groups)
    return entries, undeclared


def _chain(spec: OptimizerSpec) -> list[OptimizerSpec]:
    from optreg.specs import WrapperSpec

    chain = [spec]
    while isinstance(chain[-1], WrapperSpec):
        chain.append(chain[-1].inner)
    return chain


def _families(spec: OptimizerSpec) -> dict[str, str]:
    from optreg.errors import PluginError
    from optreg.registry import get_registry

    out = {}
    registry = get_registry()
    for owner in _chain(spec):
        try:
            out[owner.TYPE] = registry.provider("optimizer", owner.TYPE).name
        except (KeyError, LookupError, AttributeError, PluginError):  # a spec class built by hand: its type names it
            out[owner.TYPE] = owner.TYPE
    return out


def measured_state_bytes(optimizer: Any, params: Iterable[Any] | None = None) -> int:
    """Bytes of the distinct tensors in ``optimizer.state_dict()`` (state, nested wrappers' state and tensors
    kept in param groups), the parameters excluded; a DTensor counts its local shard.

    What :func:`estimate_state` is checked against: the state an optimizer holds after a step.
    """
    import torch

    if params is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
    seen: set[tuple[int, int]] = set()
    for p in params:
        seen.add(_storage_key(local_shard(p)))
    total = 0

    def walk(obj: Any) -> None:
        nonlocal total
        if isinstance(obj, torch.Tensor):
            key = _storage_key(local_shard(obj))
            if key not in seen:
                seen.add(key)
                total += key[1]
        elif isinstance(obj, Mapping):
            for value in obj.values():
                walk(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value)

    walk(optimizer.state_dict())
    return total


def _storage_key(t: Any) -> tuple[int, int]:
    if t.device.type == "meta":
        return (id(t), t.numel() * t.element_size())
    try:
        storage = t.untyped_storage()
        return (storage.data_ptr(), storage.nbytes())
    except (RuntimeError, NotImplementedError):  # a tensor subclass without a storage
        return (id(t), t.numel() * t.element_size())


def available_memory(device: Any = "cpu") -> int | None:
    """Bytes a new allocation on ``device`` can take now: free accelerator memory, or on the CPU the
    smaller of the system's available memory and the room left under this process's cgroup limit.
    ``None`` when it cannot be read."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    if not found:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
        if limit != "max":
            found.append(max(int(limit) - current, 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
