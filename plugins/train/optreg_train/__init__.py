"""The main job: ``optreg train`` and ``optreg compare`` on built-in tasks that need no download.

Python API::

    import optreg
    from optreg_train import train_run, compare_specs

    spec = optreg.load_spec("specs/adamw_cosine.toml")
    result = train_run(spec, "runs/adamw")          # RunResult: losses, time, memory, history
    results = compare_specs([spec, optreg.load_spec("specs/lion.toml")], "runs/compare")

See docs/training.md for the tasks, the outputs and resuming.
"""

from __future__ import annotations

from optreg_train.compare import compare_specs
from optreg_train.loop import RunDirError, RunResult, prepare_run, train_run
from optreg_train.tasks import load_task, stdlib_files

__all__ = ["RunDirError", "RunResult", "compare_specs", "load_task", "prepare_run", "stdlib_files", "train_run"]
