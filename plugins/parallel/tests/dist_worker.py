"""The optreg-parallel tests' worker: optreg.testing.distributed's cases, plus optreg train's checkpoints.

A case may also say ``save`` (a directory: after its steps, write optreg train's checkpoint there: one
file in one process, torch.distributed.checkpoint shards on several) and ``load`` (before its steps,
resume such a checkpoint, of any world size)::

    python -m torch.distributed.run --standalone --nproc-per-node 2 dist_worker.py cases.json out.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from optreg.testing.distributed import STEPS, max_difference, run_cases, worker_main

__all__ = ["HOOKS", "max_difference", "run_cases"]


def load_checkpoint(case: dict[str, Any], model: Any, optimizer: Any, strategy: Any) -> None:
    if not case.get("load"):
        return
    from optreg_train.checkpoint import load_run_state

    from optreg.parallel import initialize_state

    initialize_state(optimizer)
    load_run_state(Path(case["load"]), model, optimizer, strategy)


def save_checkpoint(case: dict[str, Any], model: Any, optimizer: Any, strategy: Any) -> None:
    if not case.get("save"):
        return
    from optreg_train.checkpoint import save_run_state

    Path(case["save"]).mkdir(parents=True, exist_ok=True)
    save_run_state(Path(case["save"]), model, optimizer, strategy, {"step": case.get("stop", STEPS)})


#: The hooks of this worker, for running the same cases in the test process.
HOOKS = {"before": load_checkpoint, "after": save_checkpoint}

if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2], **HOOKS)
