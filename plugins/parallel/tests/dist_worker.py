"""Train a small model with each (optimizer, strategy) case and write the final parameters: run under
``torchrun`` for a distributed strategy, or in the test process for the single-process reference.

    python -m torch.distributed.run --standalone --nproc-per-node 2 dist_worker.py cases.json out.json

Every case sees the same global batch at each step: a data-parallel rank trains on its slice (DDP and
FSDP average the gradients, so the step equals one process on the whole batch), a tensor-parallel
rank on all of it. The loss an optimizer is given is the global batch's (averaged over the
data-parallel ranks). Rank 0 writes ``{case id: {"params": {fqn: nested list}, "skipped": [steps a skip-step
optimizer skipped]} or {"error": text}}``.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import traceback
from typing import Any

import torch
from torch import nn

GLOBAL_BATCH = 8
STEPS = 10


class Net(nn.Module):
    """A residual MLP with awkward shapes for sharding on dim 0: 5 rows (uneven over 2 ranks) and a 1-row head
    (an empty shard on rank 1). The MLP's hidden width (6) splits evenly, as tensor parallel needs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 5)
        self.mlp_in = nn.Linear(5, 6)
        self.mlp_out = nn.Linear(6, 5)
        self.norm = nn.LayerNorm(5)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.embed(x))
        h = h + self.mlp_out(nn.functional.gelu(self.mlp_in(h)))
        return self.head(self.norm(h))


def batch(step: int, events: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step`` (the same on every rank); ``events`` may spike it or make it NaN."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, 6, generator=g)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    if step in events.get("spike", ()):
        y = y * 1000.0
    if step in events.get("nan", ()):
        x[GLOBAL_BATCH - 1, 0] = float("nan")  # one sample of the last data-parallel rank's slice
    return x, y


def full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    import optreg
    from optreg.optim import give_loss

    torch.manual_seed(0)
    model = Net()
    spec = optreg.parse_spec({"optimizer": case["optimizer"], "parallelism": case["parallelism"]})
    built = spec.build(model)
    model, optimizer, strategy = built.model, built.optimizer, built.strategy
    rank, size = strategy.data_parallel_rank, strategy.data_parallel_size
    per_rank = GLOBAL_BATCH // size
    events = case.get("events", {})
    if case.get("load"):  # resume a checkpoint (of any world size) written by "save"
        from pathlib import Path

        from optreg_train.checkpoint import load_run_state

        from optreg.parallel import initialize_state

        initialize_state(optimizer)
        load_run_state(Path(case["load"]), model, optimizer, strategy)
    skipped: list[int] = []
    for step in range(case.get("start", 0), case.get("stop", STEPS)):
        x, y = batch(step, events)
        x, y = x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank]

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return strategy.average_over_data_parallel(loss.detach())

        with torch.enable_grad():
            loss = closure()
        give_loss(optimizer, loss)
        optimizer.step(lambda loss=loss: loss)
        flag = getattr(optimizer, "step_skipped", None)  # skip-step: whether this step was skipped
        if isinstance(flag, torch.Tensor) and bool(flag):
            skipped.append(step)
    if case.get("save"):  # optreg train's checkpoint: checkpoint.pt in one process, DCP shards on several
        from pathlib import Path

        from optreg_train.checkpoint import save_run_state

        Path(case["save"]).mkdir(parents=True, exist_ok=True)
        save_run_state(Path(case["save"]), model, optimizer, strategy, {"step": case.get("stop", STEPS)})
    if case.get("eval_mode") and hasattr(optimizer, "eval"):
        optimizer.eval()
    params = {}
    for name, p in model.named_parameters():
        params[name.replace("module.", "", 1) if name.startswith("module.") else name] = full(p.detach()).tolist()
    return {"params": params, "skipped": skipped}


def run_cases(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for case_id, case in cases.items():
        try:
            out[case_id] = run_case(case)
        except Exception as exc:  # noqa: BLE001 - reported per case: a clear refusal or a failure
            out[case_id] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return out


def main(cases_file: str, out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    with open(cases_file) as f:
        cases = json.load(f)
    results = run_cases(cases)
    if not dist.is_initialized() or dist.get_rank() == 0:
        with open(out_file, "w") as f:
            json.dump(results, f, allow_nan=True)
    if dist.is_initialized():
        dist.barrier()
        gc.collect()  # the cases' sharded models (reference cycles) hold process groups: free them while alive
        dist.destroy_process_group()


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
    main(sys.argv[1], sys.argv[2])
