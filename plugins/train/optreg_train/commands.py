"""``optreg train | compare``: the main job (see docs/training.md)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optreg
from optreg.runspec import RunSpec

__all__ = ["plain_warnings", "register"]

#: Exit status of a run by how it ended.
EXIT = {"finished": 0, "stopped": 0, "diverged": 1, "interrupted": 130}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, metavar="N", help="override [train].steps (the schedule's length too)")
    p.add_argument("--data", metavar="FILE", help="train the char_lm task on this UTF-8 text file")
    p.add_argument("--seed", type=int, metavar="N", help="override [train].seed")
    p.add_argument("--task", choices=("char_lm", "mlp"), help="override [train].task")
    p.add_argument("--overwrite", action="store_true", help="reuse an output directory that holds a run")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar (for logs)")
    p.add_argument("--no-plots", action="store_true", help="do not write loss.png / lr.png")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's choice)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a spec on a built-in task (char-level LM on the stdlib's source, or a small MLP)",
        description="Train the model the spec's [train] table names with its optimizer, schedule and "
        "parallelism. Writes metrics.jsonl, spec.toml, checkpoint.pt, summary.json, loss.png and lr.png "
        "to --out. Ctrl-C stops after the current step with a checkpoint.",
    )
    p.add_argument("spec", nargs="?", metavar="SPEC", help="spec file (optional with --resume)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<spec name>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run whose checkpoint is in DIR")
    p.add_argument(
        "--rewarm", action="store_true",
        help="with --resume and more --steps: run the schedule again from its start (its warmup, then its decay) "
        "over the steps left; without it the LR carries on from where the run was and never jumps up",
    )
    p.add_argument(
        "--stop-after", type=int, metavar="N",
        help="stop with a checkpoint once N steps are done (the schedule still spans [train].steps)",
    )
    p.add_argument(
        "--nproc", type=int, metavar="N",
        help="train on N local processes, launched with torch.distributed.run (the spec's [parallelism] must be "
        "a distributed strategy; the global batch is batch_size x the data-parallel ranks)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "compare",
        help="train several specs on the same task, data order and initial weights; rank them",
        description="Train every spec with the first spec's [train] table (same task, seed, data and order), "
        "then print a table ranked by final validation loss and write overlaid loss curves to --out.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--out", metavar="DIR", default="runs/compare", help="output directory (default: runs/compare)")
    _add_common(p)
    p.set_defaults(func=cmd_compare)


@contextlib.contextmanager
def plain_warnings() -> Iterator[None]:
    """Show the warnings of a command as ``optreg: warning: <message>`` lines on stderr, each message once.

    A warning such as "schedule 'cosine' drives ScheduleFreeAdamW: ..." is meant for the user; Python's
    own format adds the file and the line of code that warned, which mean nothing to them.
    """
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"optreg: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)  # repeats are dropped above, by their text
        warnings.showwarning = show
        yield


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("steps", "data", "seed", "task"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def apply_train_overrides(spec: RunSpec, overrides: dict[str, Any]) -> RunSpec:
    """``spec`` with ``[train]`` keys replaced, validated like the file (errors name ``$.train.<key>``)."""
    if not overrides:
        return spec
    from optreg.convert import spec_to_dict

    data = spec_to_dict(spec)
    data.setdefault("train", {}).update(overrides)
    if overrides.get("task") not in (None, "char_lm"):
        data["train"].pop("data", None)
    return optreg.parse_spec(data, file=spec.source)


def _setup(args: argparse.Namespace):
    from rich.console import Console

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    console = Console()
    # Logs and pipes get a fixed width wide enough for the tables (rich would use 80 columns).
    return console if console.is_terminal else Console(width=120)


def _differences(a: Any, b: Any, path: str = "$") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{path}.{key}")
        return out
    return [] if a == b else [f"{path}: {a!r} here, {b!r} in the run"]


def _resume_spec(args: argparse.Namespace) -> tuple[RunSpec, Path]:
    from optreg.convert import spec_to_dict

    run_dir = Path(args.resume)
    if args.out is not None:
        raise ValueError("--resume continues the run in its own directory; leave out --out")
    if not (run_dir / "spec.toml").exists():
        raise FileNotFoundError(f"{run_dir} holds no run to resume (no spec.toml)")
    saved = optreg.load_spec(run_dir / "spec.toml")
    fixed = {k: v for k, v in _overrides(args).items() if k != "steps"}
    if fixed:
        names = ", ".join(f"--{k}" for k in fixed)
        raise ValueError(f"--resume continues a run as it was; {names} would change it (only --steps may)")
    if args.spec is not None:
        given = optreg.load_spec(args.spec)
        mine, theirs = spec_to_dict(given), spec_to_dict(saved)
        for table in (mine, theirs):
            table.get("train", {}).pop("steps", None)
            if "data" in table.get("train", {}):
                table["train"]["data"] = str(Path(table["train"]["data"]).expanduser().resolve())
        diffs = _differences(mine, theirs)
        if diffs:
            raise ValueError(
                f"{args.spec} is not the spec of the run in {run_dir} ({diffs[0]}); "
                f"leave SPEC out to continue that run"
            )
        if args.steps is None and given.train.steps != saved.train.steps:
            args.steps = given.train.steps
    spec = apply_train_overrides(saved, {"steps": args.steps} if args.steps is not None else {})
    return spec, run_dir


def _launch(args: argparse.Namespace, spec: RunSpec, out: Path) -> int:
    """``optreg train ... --nproc N``: the same command on N local processes, through torch.distributed.run.

    The launcher checks what it can in one process first (the spec builds and steps with its
    parallelism set to ``single``, the output directory is free), so a mistake shows once, before N
    processes start. torchrun's agent runs in this process: a Ctrl-C reaches the ranks (they stop after
    the same step, with a checkpoint) and the agent, which waits for them; a rank's failure shows as
    that rank's own message, not torchrun's report of it.
    """
    import logging
    import os

    import attrs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from optreg.builtins import SingleProcess
    from optreg_train.loop import check_out_dir, preflight

    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and spec.parallelism.TYPE == "single":
        raise optreg.SpecError(
            f"--nproc {args.nproc} needs a distributed strategy, but the spec's parallelism is 'single': set "
            "[parallelism] type to ddp, fsdp, hsdp, tp or fsdp_tp (optreg-parallel)",
            path="$.parallelism.type", file=spec.source,
        )
    if args.resume is None:
        check_out_dir(out, overwrite=args.overwrite)
        preflight(attrs.evolve(spec, parallelism=SingleProcess()))
    argv, skip = [], False
    for token in getattr(args, "argv", []):
        if skip:
            skip = False
        elif token == "--nproc":
            skip = True
        elif not token.startswith("--nproc="):
            argv.append(token)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # N processes share the cores (torchrun would warn and set it)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    launch = parse_args(["--standalone", f"--nproc-per-node={args.nproc}", "-m", "optreg", *argv])
    try:
        run(launch)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode in EXIT.values() or failure.exitcode == 2:  # the rank said why (or stopped on request)
            return failure.exitcode
        reason = failure.message or f"exit status {failure.exitcode}"
        raise RuntimeError(f"rank {rank} of the --nproc {args.nproc} run failed: {reason}") from None
    except SignalException:  # Ctrl-C: the ranks stopped with a checkpoint (or were killed after the agent's timeout)
        return EXIT["interrupted"]
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import os

    if "RANK" not in os.environ:  # one process, or the launcher of --nproc
        return _train(args)
    from optreg_train.loop import RunDirError

    try:
        return _train(args)
    except (optreg.SpecError, RunDirError):
        if os.environ["RANK"] == "0":
            raise
        return 2  # every rank reads the same spec and directory: rank 0 reports it, once
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """A rank's last step: free the run (its sharded modules hold the process groups) and destroy the groups
    while Python is alive; left to interpreter exit, gloo's threads can abort the process (SIGABRT) after a
    run that finished."""
    import gc

    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _train(args: argparse.Namespace) -> int:
    with plain_warnings():
        return _train_warned(args)


def _train_warned(args: argparse.Namespace) -> int:
    import os

    console = _setup(args)
    if os.environ.get("RANK", "0") != "0":  # a distributed run: only rank 0 prints
        from rich.console import Console

        console = Console(quiet=True)
    from optreg_train.loop import train_run
    from optreg_train.report import summary_table

    launcher = args.nproc is not None and "RANK" not in os.environ  # starts the ranks, which print the notes
    if args.resume is not None:
        spec, out = _resume_spec(args)  # what happens to the LR when --steps changes is said once the run is loaded
    else:
        if args.rewarm:
            raise ValueError("--rewarm restarts the schedule of a resumed run: use it with --resume DIR --steps N")
        if args.spec is None:
            raise ValueError("give a SPEC file to train (or --resume DIR)")
        spec = apply_train_overrides(optreg.load_spec(args.spec), _overrides(args))
        out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be >= 1, got {args.stop_after}")
    if launcher:
        return _launch(args, spec, out)
    verb = "resuming" if args.resume else "training"
    header = (  # train_run prints it once the spec builds (plain text: a path is never markup, never wrapped)
        f"{verb} {spec.source or 'spec'}: optimizer {spec.optimizer.TYPE}, schedule {spec.scheduler.TYPE}, "
        f"task {spec.train.task}, {spec.train.steps} steps -> {out}"
    )
    result = train_run(
        spec, out, resume=args.resume is not None, stop_after=args.stop_after, overwrite=args.overwrite,
        name=Path(spec.source).stem if spec.source and not args.resume else out.name, console=console,
        show_progress=not args.no_progress, plots=not args.no_plots, rewarm=args.rewarm, header=header,
    )
    from rich.markup import escape

    console.print(summary_table(result))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    nproc = f" --nproc {world}" if world > 1 else ""  # the resumed run may use another count (its global batch changes)
    if result.status == "interrupted":
        console.print(
            f"[yellow]interrupted at step {result.step}:[/yellow] checkpoint saved; continue with "
            f"`optreg train --resume {escape(str(out))}{nproc}`"
        )
    elif result.status == "stopped":
        console.print(
            f"stopped at step {result.step} of {result.steps}; continue with "
            f"`optreg train --resume {escape(str(out))}{nproc}`"
        )
    elif result.status == "diverged":
        console.print(
            f"[red]the loss became non-finite at step {result.step}[/red]; the last checkpoint "
            f"(if any) in {escape(str(out))} holds the last good state"
        )
    return EXIT[result.status]


def cmd_compare(args: argparse.Namespace) -> int:
    with plain_warnings():
        return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    console = _setup(args)
    from optreg_train.compare import compare_specs

    specs = [optreg.load_spec(path) for path in args.specs]
    overrides = _overrides(args)
    specs = [apply_train_overrides(s, overrides) for s in specs]
    results = compare_specs(
        specs, Path(args.out), console=console, show_progress=not args.no_progress, overwrite=args.overwrite,
        plots=not args.no_plots,
    )
    if any(r.status == "interrupted" for r in results):
        return 130
    return 0
