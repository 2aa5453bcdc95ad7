"""Hook implementations of optreg-train: the ``[train]`` table and the ``train``, ``compare``, ``lr`` and
``bench`` commands.

Imports no torch: the registry imports this module whenever it loads plugins.
"""

from __future__ import annotations

from typing import Any

import optreg
from optreg_train.specs import TrainSpec


@optreg.hookimpl
def optreg_register_tables(register: Any) -> None:
    register("train", TrainSpec)


@optreg.hookimpl
def optreg_register_commands(subparsers: Any) -> None:
    from optreg_train import bench, commands, lr

    commands.register(subparsers)
    lr.register(subparsers)
    bench.register(subparsers)
