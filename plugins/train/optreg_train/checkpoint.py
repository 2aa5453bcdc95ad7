"""Checkpoints of ``optreg train``: model, optimizer, scheduler, RNG and progress.

Two layouts, one meaning:

- a single-process run writes ``checkpoint.pt``: the model's and the optimizer's state keyed by parameter
  FQN (torch.distributed.checkpoint's full state dicts), the rest beside them. Tensors, numbers,
  strings and containers only: it loads with ``torch.load(path, weights_only=True)``.
- a distributed run writes ``checkpoint/`` with ``torch.distributed.checkpoint`` (each rank its shards,
  no gathering) and ``checkpoint/meta.pt`` (the progress, written by rank 0).

Either loads on any number of processes: a run of N ranks resumes on M (M = 1 included), the shards
re-cut as the new run's strategy shards them. Both are written to a temporary name, flushed to the disk
(``os.fsync`` of the file, then of its directory after the rename), and renamed, so neither an interrupted
save nor a power loss leaves a broken (or renamed but empty) checkpoint behind. A file that is not a
readable checkpoint (truncated by a full disk or a partial copy, or some other file) is refused with a
:class:`CheckpointError` naming it. A checkpoint of format 1 (the optimizer's own
index-keyed ``state_dict()``) still resumes in one process.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from optreg.parallel import ParallelismStrategy, load_state_dicts, state_dicts

__all__ = [
    "CHECKPOINT",
    "CheckpointError",
    "DISTRIBUTED_CHECKPOINT",
    "FORMAT",
    "load_checkpoint",
    "load_run_state",
    "newest_checkpoint",
    "save_checkpoint",
    "save_run_state",
]

CHECKPOINT = "checkpoint.pt"
DISTRIBUTED_CHECKPOINT = "checkpoint"
META = "meta.pt"
FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be resumed from (truncated, not a torch file, or not optreg train's):
    the message names the file and what to do."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format version) atomically and durably to ``path``.

    The bytes go to ``path.tmp``, are fsynced, and the file is renamed over ``path``; the directory is then
    fsynced so the rename itself survives a power loss (never a renamed but empty checkpoint).
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (a rename into it) to the disk; a no-op where the platform cannot
    (Windows opens no directories; some file systems refuse ``fsync`` on one)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)




def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (``weights_only=True``).

    A file that does not load (truncated, random bytes, a pickle of arbitrary objects) or loads as something
    else than an optreg train checkpoint raises :class:`CheckpointError` naming ``path``.
    """
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {path.parent} (expected {path.name})")
    hint = ("move it away to start the run over, or put back a good copy "
            "(e.g. from the run directory you copied it from)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError... for bad bytes
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")[:200]
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({path.stat().st_size} bytes; torch.load: {reason}): it is "
            f"truncated (an interrupted copy, a full disk) or not a file optreg train wrote; {hint}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") not in (1, FORMAT):
        what = f"a {type(payload).__name__}" if not isinstance(payload, dict) else "a dict without its format"
        raise CheckpointError(
            f"{path} is not an optreg train checkpoint (format 1 or {FORMAT}): it holds {what}; {hint}"
        )
    if not isinstance(payload.get("step"), int):
        raise CheckpointError(f"{path} is an incomplete optreg train checkpoint (no step count); {hint}")
    return payload


def newest_checkpoint(out: Path) -> tuple[str, dict[str, Any]] | None:
    """``("file" | "distributed", meta)`` of the newest checkpoint in ``out`` (by step), or ``None``."""
    found = []
    if (out / CHECKPOINT).exists():
        found.append(("file", load_checkpoint(out / CHECKPOINT)))
    if (out / DISTRIBUTED_CHECKPOINT / META).exists():
        found.append(("distributed", load_checkpoint(out / DISTRIBUTED_CHECKPOINT / META)))
    if not found:
        return None
    return max(found, key=lambda item: int(item[1]["step"]))


def save_run_state(out: Path, model: Any, optimizer: Any, strategy: ParallelismStrategy, meta: dict[str, Any]) -> None:
    """Save model, optimizer and ``meta`` (progress, scheduler, RNG) in the layout of this run's world size."""
    if not strategy.is_distributed:
        model_state, optimizer_state = state_dicts(model, optimizer, full=True)
        save_checkpoint(out / CHECKPOINT, {**meta, "model": model_state, "optimizer": optimizer_state})
        return
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    final, tmp = out / DISTRIBUTED_CHECKPOINT, out / (DISTRIBUTED_CHECKPOINT + ".tmp")
    if strategy.rank == 0 and tmp.exists():
        shutil.rmtree(tmp)
    dist.barrier()
    model_state, optimizer_state = state_dicts(model, optimizer, full=False)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(tmp))
    dist.barrier()
    if strategy.rank == 0:
        save_checkpoint(tmp / META, meta)
        old = out / (DISTRIBUTED_CHECKPOINT + ".old")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_directory(out)  # dcp fsyncs its shard files; this makes the renames durable too
        if old.exists():
            shutil.rmtree(old)
    dist.barrier()


def load_run_state(out: Path, model: Any, optimizer: Any, strategy: ParallelismStrategy) -> dict[str, Any]:
    """Load the newest checkpoint in ``out`` into ``model`` and ``optimizer`` (any world size to this one's);
    return its meta (progress, scheduler, RNG)."""
    newest = newest_checkpoint(out)
    if newest is None:
        raise FileNotFoundError(f"no checkpoint in {out} (expected {CHECKPOINT} or {DISTRIBUTED_CHECKPOINT}/)")
    layout, meta = newest
    if layout == "file":
        missing = [key for key in ("model", "optimizer") if key not in meta]
        if missing:
            raise CheckpointError(f"{out / CHECKPOINT} is an incomplete optreg train checkpoint (no "
                                  f"{' or '.join(missing)} state); move it away to start the run over")
        if meta.get("format") == 1:  # the optimizer's own state_dict(), keyed by index
            if strategy.is_distributed:
                raise ValueError(f"{out / CHECKPOINT} is of format 1 (before optreg could reshard); resume it in one "
                                 "process")
            model.load_state_dict(meta["model"])
            optimizer.load_state_dict(meta["optimizer"])
        else:
            load_state_dicts(model, optimizer, meta["model"], meta["optimizer"], full=True)
        return meta
    import torch.distributed.checkpoint as dcp

    model_state, optimizer_state = state_dicts(model, optimizer, full=False)
    target = {"model": model_state, "optimizer": optimizer_state}
    # One process resuming a distributed run's checkpoint is what resharding N -> 1 means: torch warns that it
    # "assumes the intent" even when told so (no_dist), which would only alarm the user.
    import warnings

    import torch.distributed as dist

    no_dist = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled, unavailable or uninitialized", UserWarning)
        dcp.load(target, checkpoint_id=str(out / DISTRIBUTED_CHECKPOINT), no_dist=no_dist)
    load_state_dicts(model, optimizer, target["model"], target["optimizer"], full=False)
    return meta
