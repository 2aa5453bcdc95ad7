"""``optreg lr FILE [--steps N] [-o lr.png]``: the LR schedule of a spec, one curve per param group.

The optimizer of the spec is built on the model of its ``[train] task`` (unless
``--model`` says otherwise: the rule of ``optreg validate`` and ``optreg groups``) so
its param groups, with their own initial LRs from ``group_overrides``, are the ones
a run would have; the schedule is then
evaluated for every group. With ``-o`` it writes a plot (needs matplotlib:
``pip install 'optreg-train[plot]'``), otherwise it prints a small table.

Where the optimizer scales the scheduled LR itself (:mod:`optreg_train.effective`), the effective LR
is shown beside it when it is known before training (a schedule-free warmup, RAdam's
rectification); when it is estimated during training (Prodigy's and D-Adaptation's ``d``) a note
says so and where a run records it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import attrs

__all__ = ["LRCurves", "figure", "lr_curves", "plot", "register"]

#: Most points evaluated for a plot.
MAX_PLOT_POINTS = 2001


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lr", help="the LR schedule of a spec: a plot with one curve per param group (-o), or a table"
    )
    from optreg.cli.registry_commands import MODEL_HELP

    p.add_argument("file", metavar="FILE", help="a spec file (TOML), e.g. specs/adamw_cosine.toml")
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="run length in the schedule's units (steps, or tokens when units = \"tokens\"); it is the t_max of a "
        "schedule that sets none, and how far to plot (default: the scheduler's t_max, else the run's length: "
        "[train] steps, or steps x tokens per step for a tokens schedule)",
    )
    p.add_argument("-o", "--output", metavar="PNG", help="write a plot to this file (needs matplotlib)")
    p.add_argument(
        "--model",
        help=MODEL_HELP,
    )
    p.add_argument(
        "--rows", type=int, default=11, metavar="K", help="rows of the table printed without -o (default 11)"
    )
    p.set_defaults(func=cmd_lr)


@attrs.frozen
class LRCurves:
    """The LR of every param group at ``points`` (in ``units``)."""

    file: str | None
    schedule: str
    units: str
    t_max: int | None
    points: list[int]
    #: One entry per param group: (label, initial LR, LR at each point).
    groups: list[tuple[str, float, list[float]]]
    #: Each group's effective LR at each point, where the optimizer scales the LR in a way known before training.
    effective: list[list[float]] | None = None
    #: What the optimizer does to the LR itself, when it does (printed with the table, the plot's caption).
    note: str | None = None


def sample_points(length: int, count: int) -> list[int]:
    """Up to ``count`` integer points from 0 to ``length`` inclusive, evenly spread, both ends included."""
    if length + 1 <= count:
        return list(range(length + 1))
    count = max(count, 2)
    return sorted({round(i * length / (count - 1)) for i in range(count)})


def lr_curves(spec: Any, *, steps: int | None = None, model: str | None = None, count: int = MAX_PLOT_POINTS,
              file: str | None = None) -> LRCurves:
    """Build the spec's optimizer and scheduler on a small model and evaluate the schedule of every group."""
    from optreg.cli import UsageError
    from optreg.errors import SpecError
    from optreg.models import spec_model

    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    schedule = spec.scheduler
    if schedule.t_max is not None:
        t_max = schedule.t_max
    elif steps is not None:
        t_max = steps
    else:  # the run's own length, as `optreg train` takes it (a token budget for a tokens schedule)
        t_max = spec.train.run_length(schedule.units)
    length = steps if steps is not None else t_max
    net, _ = spec_model(spec, model)  # the rule of `optreg validate` and `optreg groups` too
    try:
        built = spec.build_in_process(net, t_max=t_max)
    except SpecError as exc:
        raise (exc.with_file(file) if exc.file is None and file else exc) from None
    optimizer, scheduler = built.optimizer, built.scheduler
    points = sample_points(length, count)
    initial = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
    if hasattr(scheduler, "lr_at"):
        rows = [scheduler.lr_at(c) for c in points]
    else:  # a schedule that builds its own LRScheduler: evaluate the spec directly
        rows = [[schedule.get_lr(lr, c, t_max) for lr in initial] for c in points]
    groups = []
    for gi, group in enumerate(optimizer.param_groups):
        name = group.get("group_name") or f"group{gi}"
        groups.append((f"{gi}: {name}", initial[gi], [float(row[gi]) for row in rows]))
    effective, note = _effective(spec, optimizer, points, groups)
    return LRCurves(file=file, schedule=schedule.TYPE, units=schedule.units, t_max=t_max, points=points,
                    groups=groups, effective=effective, note=note)


def _effective(spec: Any, optimizer: Any, points: list[int],
               groups: list[tuple[str, float, list[float]]]) -> tuple[list[list[float]] | None, str | None]:
    """The effective LR of every group at every point (when the optimizer's factor is known before training),
    and the note that says what the optimizer does to the LR."""
    from optreg_train.effective import lr_controller, lr_factors_at

    if lr_controller(optimizer) is None:
        return None, None
    name = spec.optimizer.TYPE
    if lr_factors_at(optimizer, 0) is None:
        return None, (
            f"{name} sets its own step size during training (the LR times an estimate from the gradients, "
            "such as Prodigy's d): its effective LR cannot be known before training; `optreg train` records it "
            "(effective_lr in metrics.jsonl, lr.png). The LRs here are what the schedule gives the optimizer."
        )
    per_step = spec.train.tokens_per_step if spec.scheduler.units == "tokens" else 1
    factors = [lr_factors_at(optimizer, int(point // per_step)) or [] for point in points]
    effective = [[values[k] * factors[k][gi] for k in range(len(points))] for gi, (_, _, values) in enumerate(groups)]
    return effective, (
        f"{name} scales the scheduled LR itself (its warmup_steps, or a rectification, inside the optimizer): "
        "the effective LR, known before training, is shown beside the scheduled one"
    )


def _require_matplotlib() -> None:
    from optreg.cli import UsageError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "plotting needs matplotlib, which is not installed: pip install 'optreg-train[plot]' "
            "(or run without -o for a table)"
        ) from None


def plot(curves: LRCurves, output: str | Path) -> None:
    """Write the curves as an image (format from the file suffix, e.g. PNG)."""
    figure(curves).savefig(output)


def figure(curves: LRCurves) -> Any:
    """A matplotlib ``Figure``: one curve per param group, axes labelled, a legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    styles = ("-", "--", ":", "-.")  # groups with the same initial LR overlap: keep each one visible
    for i, (label, lr0, values) in enumerate(curves.groups):
        ax.plot(curves.points, values, label=f"{label} (initial lr {lr0:g})", linewidth=1.8,
                linestyle=styles[i % len(styles)], color=f"C{i}")
    for i, values in enumerate(curves.effective or []):
        ax.plot(curves.points, values, label=f"{curves.groups[i][0]}: effective", linewidth=1.4,
                linestyle=":", color=f"C{i}", alpha=0.9)
    if curves.t_max is not None and curves.t_max < curves.points[-1]:
        ax.axvline(curves.t_max, color="0.5", linestyle="--", linewidth=1, label=f"t_max = {curves.t_max}")
    ax.set_xlabel(curves.units)
    ax.set_ylabel("learning rate")
    where = f"{Path(curves.file).name}: " if curves.file else ""
    horizon = f", t_max = {curves.t_max}" if curves.t_max is not None else ""
    ax.set_title(f"{where}{curves.schedule}{horizon}")
    if curves.note:
        import textwrap

        fig.supxlabel("\n".join(textwrap.wrap(curves.note, 120)), fontsize="x-small")
    ax.set_xlim(curves.points[0], curves.points[-1])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def table_rows(curves: LRCurves) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table: a row per point, a column per param group."""
    header = [curves.units] + [label for label, _, _ in curves.groups]
    columns = [values for _, _, values in curves.groups]
    if curves.effective:
        header += [f"{label} effective" for label, _, _ in curves.groups]
        columns += curves.effective
    body = [[str(point)] + [f"{values[i]:.6g}" for values in columns] for i, point in enumerate(curves.points)]
    return header, body


def cmd_lr(args: argparse.Namespace) -> int:
    from optreg_train.commands import plain_warnings

    with plain_warnings():
        return _lr(args)


def _lr(args: argparse.Namespace) -> int:
    import optreg

    if args.output:
        _require_matplotlib()
    if args.rows < 2:
        from optreg.cli import UsageError

        raise UsageError(f"--rows must be >= 2, got {args.rows}")
    spec = optreg.get_registry().load_spec(args.file)
    count = MAX_PLOT_POINTS if args.output else args.rows
    curves = lr_curves(spec, steps=args.steps, model=args.model, count=count, file=args.file)
    if args.output:
        plot(curves, args.output)
        print(f"wrote {args.output} ({len(curves.groups)} param groups, {curves.schedule})", file=sys.stderr)
        if curves.note:
            print(f"note: {curves.note}", file=sys.stderr)
        return 0
    _print_table(curves)
    return 0


def _print_table(curves: LRCurves) -> None:
    from rich.console import Console
    from rich.table import Table

    header, body = table_rows(curves)
    horizon = f", t_max = {curves.t_max}" if curves.t_max is not None else ""
    console = Console(soft_wrap=False, width=max(Console().width, 100))
    print(f"{curves.file}: {curves.schedule}{horizon}, {len(curves.groups)} param groups (LR at {curves.units} below)")
    if curves.note:
        print(f"note: {curves.note}")
    table = Table()
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i == 0 else "left")
    for row in body:
        table.add_row(*row)
    console.print(table)

