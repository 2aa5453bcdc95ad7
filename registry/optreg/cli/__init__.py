"""The ``optreg`` command line.

The core's subcommands live in the modules listed in :data:`COMMAND_MODULES`; each
module has ``register(subparsers)`` that adds its parsers and sets ``func``. Installed
plugins add theirs through the ``optreg_register_commands`` hook.
Errors exit 2 with one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from optreg.errors import SpecError

__all__ = ["COMMAND_MODULES", "main"]

#: The core's own commands; plugins add theirs through ``optreg_register_commands`` (the main job's
#: ``train``, ``compare`` and ``lr`` come from optreg-train).
COMMAND_MODULES: tuple[str, ...] = (
    "optreg.cli.registry_commands",
    "optreg.cli.plugin_commands",
)


class UsageError(Exception):
    """A bad command line or input that is not a spec: exit 2 with the message."""


def build_parser(registry: Any = None) -> argparse.ArgumentParser:
    """The ``optreg`` parser: the core's commands and those of the plugins in ``registry`` (the process's)."""
    from optreg import __version__

    parser = argparse.ArgumentParser(
        prog="optreg",
        description="A plugin-based registry of PyTorch optimizers, LR schedulers and parallelism strategies.",
    )
    parser.add_argument("--version", action="version", version=f"optreg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    from optreg.registry import get_registry

    (registry or get_registry()).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optreg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # a command may launch itself again (--nproc)
    try:
        return int(args.func(args) or 0)
    except SpecError as exc:
        print(f"optreg: error: {exc}", file=sys.stderr)
        return 2
    except (UsageError, LookupError, FileNotFoundError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, LookupError) and exc.args else exc
        print(f"optreg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optreg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
