"""Muon's Newton-Schulz work split across 2 ranks: time per rank and bytes communicated, against 1 rank.

The model is ``--matrices`` hidden ``d x d`` matrices (default 12 x 512 x 512, Linear layers without bias, all
of the ``matrix`` role). Each configuration runs in its own ``torch.distributed.run`` launch (CPU, gloo, one
thread per rank) for ``--steps`` measured steps after one warm-up step; a rank's time is the median over the
steps, and a configuration's the slowest rank's. Printed per configuration:

- Newton-Schulz seconds per step on each rank (``Muon.split_stats.ns_seconds``: wall time; and
  ``ns_cpu_seconds``: the rank's CPU time in it, which other processes on a busy machine do not inflate),
  each as a ratio to the single-process run of the same invocation (the goal of splitting the work:
  <= 0.6 on 2 ranks);
- the optimizer step's wall time and its ratio to one process (Newton-Schulz plus communication plus the
  elementwise work);
- bytes each rank received per step for the orthogonalization, beside the naive exact way: every rank
  all-gathering every sharded matrix whole (fsdp; ddp's naive way communicates nothing and computes
  everything on every rank).

Then the distance of ``sharded_ns = "local"`` (Newton-Schulz on each rank's row shard) from the exact update:
one float32 step from the same weights and gradients under fsdp on 2 ranks, the relative Frobenius distance
of the matrices' updates. No assertion: machines are noisy.

    python bench/dist_muon.py
    python bench/dist_muon.py --dim 1024 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: name -> (optimizer table additions, parallelism table, processes, overlap)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any], int, bool]] = {
    "single, 1 process": ({}, {"type": "single"}, 1, True),
    "fsdp, 2 ranks": ({}, {"type": "fsdp"}, 2, True),
    "fsdp, 2 ranks, no overlap": ({}, {"type": "fsdp"}, 2, False),
    "hsdp 1x2, 2 ranks": ({}, {"type": "hsdp", "replicate": 1, "shard": 2}, 2, True),
    "ddp, 2 ranks": ({}, {"type": "ddp"}, 2, True),
    "fsdp, 2 ranks, sharded_ns=local": ({"sharded_ns": "local"}, {"type": "fsdp"}, 2, True),
}


class Stack(nn.Module):
    """``count`` residual ``d x d`` layers (the ``blocks`` list: FSDP units, every weight a hidden matrix)."""

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        return x


def _build(config: dict[str, Any], optimizer: dict[str, Any]) -> tuple[nn.Module, Any, Any]:
    import optreg

    torch.manual_seed(0)
    model = Stack(config["dim"], config["matrices"])
    spec = optreg.parse_spec({"optimizer": {"type": "muon", **optimizer}, "parallelism": config["parallelism"]})
    built = spec.build(model)
    return built.model, built.optimizer, built.strategy


def _grads(model: nn.Module, strategy: Any, step: int, dim: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(8, dim, generator=g)
    rank, size = strategy.data_parallel_rank, strategy.data_parallel_size
    x = x[rank * 8 // size:(rank + 1) * 8 // size]
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def worker(config: dict[str, Any], out: Path) -> None:
    """One rank: timed steps, or (``distance``) one exact and one local step from the same start."""
    import torch.distributed as dist
    from optreg_muon.functional import distributed as D

    torch.set_num_threads(1)
    D.OVERLAP = config["overlap"]
    result: dict[str, Any] = {}
    if config.get("distance"):
        updates = []
        for mode in ("exact", "local"):
            model, optimizer, strategy = _build(config, {"ns_dtype": "float32", "sharded_ns": mode})
            before = [_full(p.detach()).clone() for p in model.parameters()]
            _grads(model, strategy, 0, config["dim"])
            optimizer.step()
            updates.append(torch.cat([(_full(p.detach()) - b).reshape(-1)
                                      for p, b in zip(model.parameters(), before)]))
        result["distance"] = float((updates[1] - updates[0]).norm() / updates[0].norm())
    else:
        model, optimizer, strategy = _build(config, config["optimizer"])
        rows: list[dict[str, float]] = []
        for step in range(config["steps"] + 1):
            _grads(model, strategy, step, config["dim"])
            start = time.perf_counter()
            optimizer.step()
            seconds = time.perf_counter() - start
            stats = optimizer.split_stats
            if step:  # the first step allocates the state
                rows.append({"step": seconds, "ns": stats.ns_seconds, "ns_cpu": stats.ns_cpu_seconds,
                             "received": stats.received_bytes,
                             "gather": stats.gather_bytes, "computed": stats.computed, "total": stats.total})
        result = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    rank = dist.get_rank() if dist.is_initialized() else 0
    results = [result]
    if dist.is_initialized():
        results = [None] * dist.get_world_size()
        dist.all_gather_object(results, result)
    if rank == 0:
        out.write_text(json.dumps(results))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run(config: dict[str, Any], nproc: int, directory: Path, name: str) -> list[dict[str, Any]]:
    path, out = directory / f"{name}.json", directory / f"{name}-out.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                    __file__, "--worker", str(path), str(out)], check=True, capture_output=True, env=env)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--matrices", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(Path(args.worker[0]).read_text()), Path(args.worker[1]))
        return
    print(f"torch {torch.__version__}, {args.matrices} x {args.dim}x{args.dim} matrices, Muon defaults (bf16 "
          f"Newton-Schulz), 1 thread per rank, median of {args.steps} steps, slowest rank\n")
    print(f"{'configuration':34s} {'NS s/rank':>10s} {'ratio':>6s} {'NS cpu s':>9s} {'ratio':>6s} "
          f"{'step s':>8s} {'ratio':>6s} "
          f"{'NS share':>9s} {'recv MB':>8s} {'all-gather MB':>14s}")
    base: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, (optimizer, parallelism, nproc, overlap)) in enumerate(CONFIGS.items()):
            config = {"dim": args.dim, "matrices": args.matrices, "steps": args.steps, "optimizer": optimizer,
                      "parallelism": parallelism, "overlap": overlap}
            ranks = run(config, nproc, Path(tmp), f"c{n}")
            ns, step = max(r["ns"] for r in ranks), max(r["step"] for r in ranks)
            cpu = max(r["ns_cpu"] for r in ranks)
            base = base or {"ns": ns, "step": step, "cpu": cpu}
            share = "/".join(f"{int(r['computed'])}" for r in ranks) + f" of {int(ranks[0]['total'])}"
            print(f"{name:34s} {ns:10.3f} {ns / base['ns']:6.2f} {cpu:9.3f} {cpu / base['cpu']:6.2f} "
                  f"{step:8.3f} {step / base['step']:6.2f} "
                  f"{share:>9s} {max(r['received'] for r in ranks) / 1e6:8.2f} "
                  f"{max(r['gather'] for r in ranks) / 1e6:14.2f}")
        config = {"dim": args.dim, "matrices": args.matrices, "parallelism": {"type": "fsdp"}, "overlap": True,
                  "distance": True}
        distance = run(config, 2, Path(tmp), "distance")[0]["distance"]
    print(f"\nsharded_ns = 'local' vs exact (fsdp, 2 ranks, float32, one step): relative Frobenius distance "
          f"of the update {distance:.3f}")


if __name__ == "__main__":
    main()
