"""Run optimizers under parallelism strategies and compare with one process: the harness of the distributed tests.

A *case* is a dict: ``optimizer`` and ``parallelism`` (spec tables), ``model`` (a name in :data:`MODELS`,
default ``"net"``), and optionally ``events`` (``{"spike": [steps], "nan": [steps]}``), ``start`` /
``stop`` (the steps to run, default 0 to :data:`STEPS`) and ``eval_mode`` (call the optimizer's
``eval()`` at the end, as schedule-free evaluation does). Every case sees the same global batch at each
step: a data-parallel rank trains on its slice (DDP and FSDP average the gradients, so the step equals one
process on the whole batch), a tensor-parallel rank on all of it, and the loss an optimizer is given is
the global batch's. :func:`run_cases` runs cases in this process (one process, or one rank of a launch);
:func:`launch` runs them on N processes with ``torch.distributed.run``::

    from optreg.testing.distributed import launch, run_cases, max_difference

    cases = {"adamw": {"optimizer": {"type": "adamw"}, "parallelism": {"type": "fsdp"}}}
    two = launch(cases, tmp_path, nproc=2)                  # needs optreg-parallel
    one = run_cases({k: {**c, "parallelism": {"type": "single"}} for k, c in cases.items()})
    assert max_difference(two["adamw"]["params"]["embed.weight"], one["adamw"]["params"]["embed.weight"]) < 2e-5

A result is ``{"params": {fqn: nested list}, "skipped": [steps a skip-step optimizer skipped]}`` or
``{"error": "Type: message", "traceback": text}``. A distributed strategy's parameters are gathered whole.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["GLOBAL_BATCH", "MODELS", "STEPS", "launch", "max_difference", "run_case", "run_cases"]

GLOBAL_BATCH = 8
STEPS = 10
IN_FEATURES = 6


class Net(nn.Module):
    """A residual MLP with awkward shapes for sharding on dim 0: 5 rows (uneven over 2 ranks) and a 1-row head
    (an empty shard on rank 1). The MLP's hidden width (6) splits evenly, as tensor parallel needs
    (plan ``{"mlp_in": "colwise", "mlp_out": "rowwise"}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(IN_FEATURES, 5)
        self.mlp_in = nn.Linear(5, 6)
        self.mlp_out = nn.Linear(6, 5)
        self.norm = nn.LayerNorm(5)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.embed(x))
        h = h + self.mlp_out(nn.functional.gelu(self.mlp_in(h)))
        return self.head(self.norm(h))


class Matrices(nn.Module):
    """Hidden matrices for the orthogonal optimizers (every weight has the ``matrix`` role): 12 blocks of one
    shape (batched together), an MLP pair for tensor parallel (``{"mlp_in": "colwise", "mlp_out":
    "rowwise"}``), a 5-row matrix (uneven shards) and a 1-row one (an empty shard on rank 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(IN_FEATURES, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8, bias=False) for _ in range(12))
        self.mlp_in = nn.Linear(8, 6)
        self.mlp_out = nn.Linear(6, 8)
        self.odd = nn.Linear(8, 5)
        self.tiny = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        for block in self.blocks:
            h = h + 0.5 * torch.tanh(block(h))
        h = h + self.mlp_out(nn.functional.gelu(self.mlp_in(h)))
        return self.tiny(torch.tanh(self.odd(h)))


#: The models a case may name.
MODELS: dict[str, Callable[[], nn.Module]] = {"net": Net, "matrices": Matrices}


def batch(step: int, events: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step`` (the same on every rank); ``events`` may spike it or make it NaN."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, IN_FEATURES, generator=g)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    if step in events.get("spike", ()):
        y = y * 1000.0
    if step in events.get("nan", ()):
        x[GLOBAL_BATCH - 1, 0] = float("nan")  # one sample of the last data-parallel rank's slice
    return x, y


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


#: ``hook(case, model, optimizer, strategy)``: what a harness adds before the steps (load a checkpoint) or
#: after them (save one).
Hook = Callable[[dict[str, Any], nn.Module, Any, Any], None]


def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), y)


def run_case(case: dict[str, Any], *, before: Hook | None = None, after: Hook | None = None) -> dict[str, Any]:
    """Build the case's model, optimizer and strategy in this process and train it; return its result."""
    import optreg
    from optreg.optim import give_loss, per_sample_grads

    torch.manual_seed(0)
    model = MODELS[case.get("model", "net")]()
    spec = optreg.parse_spec({"optimizer": case["optimizer"], "parallelism": case["parallelism"]})
    built = spec.build(model)
    model, optimizer, strategy = built.model, built.optimizer, built.strategy
    rank, size = strategy.data_parallel_rank, strategy.data_parallel_size
    per_rank = GLOBAL_BATCH // size
    events = case.get("events", {})
    if before is not None:
        before(case, model, optimizer, strategy)
    skipped: list[int] = []
    for step in range(case.get("start", 0), case.get("stop", STEPS)):
        x, y = batch(step, events)
        x, y = x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank]

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return strategy.average_over_data_parallel(loss.detach())

        kind = spec.optimizer.step_input()
        if kind == "closure":  # the optimizer evaluates the loss itself (SAM, Sophia, L-BFGS)
            optimizer.step(closure)
        elif kind == "per_sample":  # per-example gradients (DP-SGD)
            optimizer.step(lambda x=x, y=y: per_sample_grads(model, _mse, x, y))
        else:
            with torch.enable_grad():
                loss = closure()
            give_loss(optimizer, loss)
            optimizer.step(lambda loss=loss: loss)
        flag = getattr(optimizer, "step_skipped", None)  # skip-step: whether this step was skipped
        if isinstance(flag, torch.Tensor) and bool(flag):
            skipped.append(step)
    if after is not None:
        after(case, model, optimizer, strategy)
    if case.get("eval_mode") and hasattr(optimizer, "eval"):
        optimizer.eval()
    params = {}
    for name, p in model.named_parameters():
        params[name.removeprefix("module.")] = _full(p.detach()).tolist()
    return {"params": params, "skipped": skipped, "state": _state_sizes(spec, model, optimizer, strategy, case)}


def _state_sizes(spec: Any, model: nn.Module, optimizer: Any, strategy: Any, case: dict[str, Any]) -> dict[str, Any]:
    """This rank's optimizer state after the steps, and two estimates of it: from the built (sharded) model's
    local shapes, and from a fresh unsharded model as ``optreg validate --world-size`` simulates the sharding."""
    from optreg.memory import measured_state_bytes

    torch.manual_seed(0)
    built = spec.estimate_state(model)
    simulated = spec.estimate_state(MODELS[case.get("model", "net")](), world_size=strategy.world_size)
    return {
        "measured": measured_state_bytes(optimizer),
        "estimate": [built.first_step_bytes, built.total_bytes],
        "simulated": [simulated.first_step_bytes, simulated.total_bytes],
    }


def run_cases(
    cases: dict[str, dict[str, Any]], *, before: Hook | None = None, after: Hook | None = None
) -> dict[str, Any]:
    """:func:`run_case` for every case; a case that raises gives ``{"error", "traceback"}`` (a refusal or a bug)."""
    out = {}
    for case_id, case in cases.items():
        try:
            out[case_id] = run_case(case, before=before, after=after)
        except Exception as exc:  # noqa: BLE001 - reported per case: a clear refusal or a failure
            out[case_id] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return out


def worker_main(cases_file: str, out_file: str, *, before: Hook | None = None, after: Hook | None = None) -> None:
    """One rank of :func:`launch`: run the cases, rank 0 writes the results, then end the process groups cleanly."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    cases = json.loads(Path(cases_file).read_text())
    results = run_cases(cases, before=before, after=after)
    if not dist.is_initialized() or dist.get_rank() == 0:
        Path(out_file).write_text(json.dumps(results, allow_nan=True))
    if dist.is_initialized():
        dist.barrier()
        gc.collect()  # the cases' sharded models (reference cycles) hold process groups: free them while alive
        dist.destroy_process_group()


def launch(
    cases: dict[str, dict[str, Any]], workdir: Path, *, nproc: int = 2, name: str = "cases",
    worker: str | Path | None = None, timeout: float = 900,
) -> dict[str, Any]:
    """Run ``cases`` on ``nproc`` processes (``torch.distributed.run``, CPU threads 1 each); return rank 0's results.

    ``worker`` is a script calling :func:`worker_main` with hooks (default: this module's own).
    """
    workdir = Path(workdir)
    cases_file, out_file = workdir / f"{name}-cases.json", workdir / f"{name}-out.json"
    cases_file.write_text(json.dumps(cases))
    target = [str(worker)] if worker is not None else ["-m", __name__]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
         *target, str(cases_file), str(out_file)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    if proc.returncode != 0 or not out_file.exists():
        raise AssertionError(f"{name}: the launch of {nproc} processes failed\n{output}")
    return json.loads(out_file.read_text())


def max_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between two nested lists (inf for a shape mismatch, NaN where one is NaN)."""
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if ta.shape != tb.shape:
        return math.inf
    both_nan = ta.isnan() & tb.isnan()
    diff = (ta - tb).abs()
    diff[both_nan] = 0.0
    return float(diff.max()) if diff.numel() else 0.0


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2])
