"""pluggy hook specifications of optreg (project name and entry point group ``optreg``).

A plugin is a module (or object) with functions marked ``@optreg.hookimpl`` whose
names match the hooks below. It is published through an entry point in the
``optreg`` group::

    [project.entry-points.optreg]
    myfamily = "optreg_myfamily.plugin"

Each registration hook receives a ``register`` callback; call it once per spec
class. The core calls every plugin's hook implementations separately, so it
always knows which plugin provided which name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = [
    "hookimpl",
    "hookspec",
    "optreg_register_commands",
    "optreg_register_optimizers",
    "optreg_register_parallelism_strategies",
    "optreg_register_schedulers",
    "optreg_register_tables",
    "RegisterCallback",
]

PROJECT_NAME = "optreg"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: What every registration hook receives: ``register(spec_class, *, aliases=())`` registers one class,
#: ``register.all(specs.ALL_SPECS)`` every class of the hook's kind among a plugin's specs.
RegisterCallback = Callable[..., Any]


@hookspec
def optreg_register_optimizers(register: RegisterCallback) -> None:
    """Register optimizer spec classes (subclasses of :class:`optreg.OptimizerSpec`).

    Example (``register.all`` takes the optimizer specs among a list of a plugin's specs)::

        @optreg.hookimpl
        def optreg_register_optimizers(register):
            register.all(specs.ALL_SPECS)
            register(MyLionSpec, aliases=("lion_v2",))
    """


@hookspec
def optreg_register_schedulers(register: RegisterCallback) -> None:
    """Register LR schedule spec classes (subclasses of :class:`optreg.SchedulerSpec`).

    Example::

        @optreg.hookimpl
        def optreg_register_schedulers(register):
            register(MyCosineSpec)
    """


@hookspec
def optreg_register_parallelism_strategies(register: RegisterCallback) -> None:
    """Register parallelism strategy spec classes (subclasses of :class:`optreg.ParallelismSpec`).

    Example::

        @optreg.hookimpl
        def optreg_register_parallelism_strategies(register):
            register(MyShardingSpec)
    """


@hookspec
def optreg_register_tables(register: RegisterCallback) -> None:
    """Register top-level tables of the spec file that this plugin reads: ``register(name, cls)``.

    ``cls`` is a frozen attrs class (strictly validated like a spec, every field with a default);
    the table is then valid in spec files and reachable as ``spec.<name>`` (a spec that leaves it
    out reads as ``cls()``). The main job registers ``[train]``::

        @optreg.hookimpl
        def optreg_register_tables(register):
            register("train", TrainSpec)

    A table the class knows its run length from may define
    ``run_length(units, data_parallel_size) -> int | None`` (``RunSpec.build`` then spans the schedule
    over it; a token budget counts the tokens of every data-parallel rank).
    """


@hookspec
def optreg_register_commands(subparsers: Any) -> None:
    """Add ``optreg`` subcommands: ``subparsers`` is the ``argparse`` subparsers action of the CLI.

    Each parser sets ``func`` (``parser.set_defaults(func=...)``), a function of the parsed
    arguments returning the exit status. Keep the module importable without torch: import what a
    command needs inside its function, so ``optreg list`` stays fast::

        @optreg.hookimpl
        def optreg_register_commands(subparsers):
            parser = subparsers.add_parser("hello", help="say hello")
            parser.set_defaults(func=lambda args: print("hello") or 0)

    A plugin whose commands fail to register (a name another plugin took) is reported by
    ``optreg plugins``; the other commands still work.
    """
