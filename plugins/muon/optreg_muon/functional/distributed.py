"""Newton-Schulz work split across ranks: every whole matrix orthogonalized once, by one rank (exact).

An orthogonalized update is a function of the whole matrix, so under data parallelism the naive way
(:mod:`optreg_muon.functional.sharded`) has every rank gather every matrix and run every Newton-Schulz
iteration: exact, and no faster than one process. Here each matrix has one *owner* rank, which alone
runs Newton-Schulz on it (microsoft/dion's all-to-all pattern, Ahn et al. 2025, arXiv 2504.05295):

- Row-sharded ``DTensor`` s (FSDP2 / HSDP ``Shard(0)`` over a mesh dimension, replicated over the
  others): matrices of one shape form a batch; one ``all_to_all_single`` over the shard group sends every
  rank's row shard of a matrix to its owner (*unshard*), the owner orthogonalizes its whole matrices, and
  a second ``all_to_all_single`` sends each rank its rows of the results (*reshard*). Under HSDP the
  matrices are also divided between the replicate groups, and an all-gather over the replicate
  dimension gives every replica the rows the other replicas computed.
- Replicated plain tensors (DDP): each rank orthogonalizes its share of each batch and one
  all-gather over the data-parallel group gives every rank every result.

Owners are chosen greedily by cost (``rows * cols * min(rows, cols)``, the Newton-Schulz FLOPs up to a
constant), from the shapes alone: every rank computes the same plan without communicating. The batches'
collectives are posted asynchronously (``async_op=True``) so the unshard of one batch overlaps the
Newton-Schulz of the previous one.

Layouts this module does not split (tensor parallel's ``Shard(1)``, two shardings of one dimension in
``fsdp_tp``, ``Partial``) are left to :mod:`~optreg_muon.functional.sharded` (gather whole on every rank).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from optreg.optim import is_sharded

__all__ = ["RowLayout", "SplitStats", "local_rows", "row_counts", "row_layout", "split_orthogonalize", "to_layout"]

#: Post every batch's collectives asynchronously (the unshard of a batch overlaps the previous batch's
#: Newton-Schulz). ``False`` waits for each collective where it is posted (bench/dist_muon.py compares).
OVERLAP = True


def row_counts(rows: int, size: int) -> tuple[int, ...]:
    """The rows each of ``size`` ranks holds of a ``Shard(0)`` tensor with ``rows`` rows (``torch.chunk``'s rule,
    as DTensor: ``ceil(rows / size)`` per rank, the last ones fewer or none)."""
    chunk = -(-rows // size) if rows else 0
    return tuple(max(0, min(chunk, rows - k * chunk)) for k in range(size))


@dataclass(frozen=True)
class RowLayout:
    """Where a tensor's dim-0 rows live: this rank's position in the shard group (row shards) and in the
    replicate group (identical copies, between which the work is divided too). A group of size 1 is ``None``."""

    shard_group: Any
    shard_size: int
    shard_rank: int
    counts: tuple[int, ...]
    replicate_group: Any
    replicate_size: int
    replicate_rank: int
    key: tuple

    @property
    def rows(self) -> tuple[int, int]:
        """This rank's rows of dim 0: ``(start, stop)``."""
        start = sum(self.counts[: self.shard_rank])
        return start, start + self.counts[self.shard_rank]


def _ranks(group: Any) -> tuple[int, ...]:
    import torch.distributed as dist

    return tuple(dist.get_process_group_ranks(group))


def row_layout(t: torch.Tensor, replicate_mesh: Any = None) -> RowLayout | None:
    """``t``'s row layout, or ``None`` for a layout not split here.

    A ``DTensor`` with exactly one ``Shard(0)`` placement and ``Replicate`` on every other mesh dimension
    (its groups come from its own mesh; a dimension named ``replicate`` also divides the work). A plain
    tensor: replicated over ``replicate_mesh`` (DDP's data-parallel mesh), or ``None`` without one.
    """
    if not is_sharded(t):
        if replicate_mesh is None:
            return None
        group = replicate_mesh.get_group()
        size = replicate_mesh.size()
        if size == 1:
            return None
        return RowLayout(None, 1, 0, (t.shape[0],), group, size, replicate_mesh.get_local_rank(), ((), _ranks(group)))
    from torch.distributed.tensor import Replicate, Shard

    mesh = t.device_mesh
    names = mesh.mesh_dim_names or ()
    shard_dim = replicate_dim = None
    for k, placement in enumerate(t.placements):
        if type(placement) is Shard and placement.dim == 0 and shard_dim is None:
            shard_dim = k
        elif isinstance(placement, Replicate):
            if k < len(names) and names[k] == "replicate" and mesh.size(k) > 1:
                replicate_dim = k
        else:
            return None
    if t.ndim < 2:
        return None
    shard_group = replicate_group = None
    shard_size, shard_rank, replicate_size, replicate_rank = 1, 0, 1, 0
    if shard_dim is not None and mesh.size(shard_dim) > 1:
        shard_group, shard_size = mesh.get_group(shard_dim), mesh.size(shard_dim)
        shard_rank = mesh.get_local_rank(shard_dim)
    if replicate_dim is not None:
        replicate_group = mesh.get_group(replicate_dim)
        replicate_size, replicate_rank = mesh.size(replicate_dim), mesh.get_local_rank(replicate_dim)
    counts = row_counts(t.shape[0], shard_size)
    if t.to_local().shape[0] != counts[shard_rank]:
        return None  # not torch.chunk's rows (a custom shard function): gather whole instead
    key = (_ranks(shard_group) if shard_group is not None else (),
           _ranks(replicate_group) if replicate_group is not None else ())
    return RowLayout(shard_group, shard_size, shard_rank, counts, replicate_group, replicate_size, replicate_rank,
                     key)


def local_rows(t: torch.Tensor) -> torch.Tensor:
    """This rank's rows of ``t``: a ``DTensor``'s local tensor, a plain tensor itself."""
    return t.to_local() if is_sharded(t) else t


def to_layout(local: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``local`` (this rank's rows, as :func:`local_rows` of ``ref``) as a tensor laid out like ``ref``."""
    if not is_sharded(ref):
        return local.reshape(ref.shape)
    from torch.distributed.tensor import DTensor

    shape = ref.to_local().shape
    return DTensor.from_local(local.reshape(shape), ref.device_mesh, ref.placements, shape=ref.shape,
                              stride=ref.stride(), run_check=False)


@dataclass
class SplitStats:
    """What one rank did in the last step's matrix update (summed over param groups)."""

    #: Matrices (parameters) orthogonalized, and those this rank ran Newton-Schulz on.
    total: int = 0
    computed: int = 0
    #: Seconds spent in Newton-Schulz on this rank: wall time, and the CPU time of the calling thread (what
    #: the work costs, not counting time the thread waits for a core another process holds).
    ns_seconds: float = 0.0
    ns_cpu_seconds: float = 0.0
    #: Bytes this rank received from other ranks for the orthogonalization, and what gathering every sharded
    #: matrix whole on every rank (the exact fallback) receives.
    received_bytes: int = 0
    gather_bytes: int = 0
    #: Per-matrix record of who computed what (index within the call, owner flat rank): for tests.
    owners: list[int] = field(default_factory=list)


def _cost(shape: Sequence[int]) -> float:
    rows = shape[0]
    cols = math.prod(shape[1:]) if len(shape) > 1 else 1
    return float(rows) * cols * min(rows, cols)


@dataclass
class _Batch:
    indices: list[int]
    layout: RowLayout
    shape: tuple[int, ...]
    owners: list[tuple[int, int]]  # (replicate rank, shard rank) per index
    mine: list[int] = field(default_factory=list)  # positions (in indices) of my replica's matrices
    owned: list[int] = field(default_factory=list)  # positions this rank computes
    wholes: list[torch.Tensor] = field(default_factory=list)
    results: list[torch.Tensor] = field(default_factory=list)
    local: dict[int, torch.Tensor] = field(default_factory=dict)  # position -> my rows of the result
    pending: list[Callable[[], None]] = field(default_factory=list)


def _rest(shape: Sequence[int]) -> int:
    return math.prod(shape[1:])


def _post(work: Any, finish: Callable[[], None], batch: _Batch, overlap: bool) -> None:
    if work is not None and not overlap:
        work.wait()
        work = None

    def done() -> None:
        if work is not None:
            work.wait()
        finish()

    batch.pending.append(done)


def _drain(batch: _Batch) -> None:
    while batch.pending:
        batch.pending.pop(0)()


def split_orthogonalize(
    updates: Sequence[torch.Tensor],
    layouts: Sequence[RowLayout],
    compute: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    *,
    out_dtype: torch.dtype,
    stats: SplitStats | None = None,
    overlap: bool | None = None,
) -> list[torch.Tensor]:
    """This rank's rows of ``compute(whole)`` for every update, each whole update computed by one rank.

    ``updates`` are laid out as ``layouts`` say (``DTensor`` s or replicated plain tensors); ``compute`` maps
    whole tensors (one batch: equal shapes) to whole results of the same shapes, cast to ``out_dtype``.
    Every rank of the groups must call this with the same shapes, layouts and order (a collective).
    """
    import torch.distributed as dist

    overlap = OVERLAP if overlap is None else overlap
    stats = stats if stats is not None else SplitStats()
    locals_ = [local_rows(u) for u in updates]
    batches: dict[tuple, _Batch] = {}
    for i, (u, layout) in enumerate(zip(updates, layouts)):
        key = (tuple(u.shape), locals_[i].dtype, locals_[i].device, layout.key)
        if key not in batches:
            batches[key] = _Batch([], layout, tuple(u.shape), [])
        batches[key].indices.append(i)
    loads: dict[tuple, list[float]] = {}
    for batch in batches.values():  # owners: greedy by cost, the same plan on every rank
        lay = batch.layout
        load = loads.setdefault(lay.key, [0.0] * (lay.replicate_size * lay.shard_size))
        for _ in batch.indices:
            owner = min(range(len(load)), key=lambda k: (load[k], k))
            load[owner] += _cost(batch.shape)
            batch.owners.append(divmod(owner, lay.shard_size))
        me = (lay.replicate_rank, lay.shard_rank)
        batch.mine = [k for k, (r, _) in enumerate(batch.owners) if r == lay.replicate_rank]
        batch.owned = [k for k, o in enumerate(batch.owners) if o == me]
        stats.total += len(batch.indices)
        stats.computed += len(batch.owned)
        stats.owners.extend(r * lay.shard_size + s for r, s in batch.owners)
    out: list[torch.Tensor | None] = [None] * len(updates)

    # 1. unshard: every rank's rows of a matrix to its owner (posted for all batches first)
    for batch in batches.values():
        lay, shape = batch.layout, batch.shape
        rest = _rest(shape)
        first = locals_[batch.indices[0]]
        stats.gather_bytes += (math.prod(shape) - first.numel()) * first.element_size() * len(batch.indices)
        if lay.shard_size == 1:
            batch.wholes = [locals_[batch.indices[k]] for k in batch.owned]
            continue
        by_dest = [[k for k in batch.mine if batch.owners[k][1] == d] for d in range(lay.shard_size)]
        send = torch.cat([locals_[batch.indices[k]].reshape(-1) for d in range(lay.shard_size) for k in by_dest[d]]
                         or [first.new_empty(0)])
        in_splits = [len(by_dest[d]) * lay.counts[lay.shard_rank] * rest for d in range(lay.shard_size)]
        out_splits = [len(batch.owned) * lay.counts[s] * rest for s in range(lay.shard_size)]
        recv = first.new_empty(sum(out_splits))
        stats.received_bytes += (sum(out_splits) - out_splits[lay.shard_rank]) * recv.element_size()
        work = dist.all_to_all_single(recv, send, out_splits, in_splits, group=lay.shard_group, async_op=True)

        def unshard(batch: _Batch = batch, recv: torch.Tensor = recv, out_splits: list[int] = out_splits) -> None:
            lay = batch.layout
            pieces = recv.split(out_splits)
            per_source = [p.reshape(len(batch.owned), lay.counts[s], *batch.shape[1:]) for s, p in enumerate(pieces)]
            batch.wholes = [torch.cat([src[n] for src in per_source]) for n in range(len(batch.owned))]

        _post(work, unshard, batch, overlap)

    # 2. Newton-Schulz on the owned matrices, 3. reshard each batch as soon as it is computed
    for batch in batches.values():
        _drain(batch)
        lay, shape = batch.layout, batch.shape
        rest = _rest(shape)
        start, cpu = time.perf_counter(), time.thread_time()
        batch.results = [r.to(out_dtype) for r in compute(batch.wholes)] if batch.wholes else []
        stats.ns_seconds += time.perf_counter() - start
        stats.ns_cpu_seconds += time.thread_time() - cpu
        if lay.shard_size == 1:
            batch.local = dict(zip(batch.owned, batch.results))
            continue
        offsets = [sum(lay.counts[:d]) for d in range(lay.shard_size)]
        send = torch.cat([r[offsets[d]:offsets[d] + lay.counts[d]].reshape(-1)
                          for d in range(lay.shard_size) for r in batch.results]
                         or [torch.empty(0, dtype=out_dtype, device=locals_[batch.indices[0]].device)])
        in_splits = [len(batch.owned) * lay.counts[d] * rest for d in range(lay.shard_size)]
        by_source = [[k for k in batch.mine if batch.owners[k][1] == s] for s in range(lay.shard_size)]
        out_splits = [len(by_source[s]) * lay.counts[lay.shard_rank] * rest for s in range(lay.shard_size)]
        recv = send.new_empty(sum(out_splits))
        stats.received_bytes += (sum(out_splits) - out_splits[lay.shard_rank]) * recv.element_size()
        work = dist.all_to_all_single(recv, send, out_splits, in_splits, group=lay.shard_group, async_op=True)

        def reshard(batch: _Batch = batch, recv: torch.Tensor = recv, out_splits: list[int] = out_splits,
                    by_source: list[list[int]] = by_source) -> None:
            lay = batch.layout
            mine_rows = (lay.counts[lay.shard_rank], *batch.shape[1:])
            for s, piece in enumerate(recv.split(out_splits)):
                for n, k in enumerate(by_source[s]):
                    batch.local[k] = piece.reshape(len(by_source[s]), *mine_rows)[n]

        _post(work, reshard, batch, overlap)

    # 4. replicas: every replica's rows of the matrices the other replicas computed
    for batch in batches.values():
        _drain(batch)
        lay = batch.layout
        if lay.replicate_size == 1:
            continue
        mine_rows = (lay.counts[lay.shard_rank], *batch.shape[1:])
        per_replica = [[k for k, (r, _) in enumerate(batch.owners) if r == q] for q in range(lay.replicate_size)]
        size = math.prod(mine_rows)
        longest = max(len(ks) for ks in per_replica) * size
        device = locals_[batch.indices[0]].device
        send = torch.zeros(longest, dtype=out_dtype, device=device)
        if batch.mine:
            send[: len(batch.mine) * size] = torch.cat([batch.local[k].reshape(-1) for k in batch.mine])
        recv = send.new_empty(longest * lay.replicate_size)
        stats.received_bytes += longest * (lay.replicate_size - 1) * recv.element_size()
        work = dist.all_gather_single(recv, send, group=lay.replicate_group, async_op=True)

        def gathered(batch: _Batch = batch, recv: torch.Tensor = recv, per_replica: list[list[int]] = per_replica,
                     longest: int = longest, mine_rows: tuple = mine_rows) -> None:
            for q, ks in enumerate(per_replica):
                chunk = recv[q * longest:(q + 1) * longest]
                for n, k in enumerate(ks):
                    batch.local[k] = chunk[n * math.prod(mine_rows):(n + 1) * math.prod(mine_rows)].reshape(mine_rows)

        _post(work, gathered, batch, overlap)
    for batch in batches.values():
        _drain(batch)
        for k, i in enumerate(batch.indices):
            out[i] = batch.local[k]
    return out  # type: ignore[return-value]
