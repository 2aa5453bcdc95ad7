"""The main job: ``optreg train`` and ``optreg compare`` on built-in tasks that need no download.

Python API::

    import optreg
    from optreg_train import train_run, compare_specs

    spec = optreg.load_spec("specs/adamw_cosine.toml")
    result = train_run(spec, "runs/adamw")          # RunResult: losses, time, memory, history
    results = compare_specs([spec, optreg.load_spec("specs/lion.toml")], "runs/compare")

See docs/training.md for the tasks, the outputs and resuming.

Importing the package imports no torch (the registry imports ``optreg_train.plugin`` for every
``optreg`` command): the names below load on first use.
"""

from __future__ import annotations

from optreg.lazy import lazy_exports
from optreg_train.specs import TrainSpec

__all__ = [
    "RunDirError",
    "RunResult",
    "TrainSpec",
    "compare_specs",
    "load_task",
    "prepare_run",
    "stdlib_files",
    "train_run",
]

_LAZY = {
    "compare_specs": "optreg_train.compare",
    "RunDirError": "optreg_train.loop",
    "RunResult": "optreg_train.results",
    "prepare_run": "optreg_train.loop",
    "train_run": "optreg_train.loop",
    "load_task": "optreg_train.tasks",
    "stdlib_files": "optreg_train.tasks",
}

#: Names that import torch, served on first use (the registry imports this package for every command).
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
