"""Rich tables: the summary of one run and the ranking of a comparison.

Cells are rich markup (the status colours); every text that comes from the user (run names, paths) is
escaped, so ``[draft]`` in a file name prints as written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from optreg_train.metrics import format_bytes
from optreg_train.results import TRAIN_LOSS_WINDOW, RunResult

__all__ = ["ranking_table", "rank", "schedule_cell", "summary_table"]


def _loss(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}"


def _accuracy(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def schedule_cell(result: RunResult, *, one_line: bool = False) -> str:
    """The schedule's name and, where the optimizer sets its own step size (schedule-free warmup, Prodigy's
    ``d``), the effective LR of the main param group: first, peak when it is above both ends, and last
    (on lines of their own, for a narrow column, unless ``one_line``)."""
    name = result.spec.scheduler.TYPE
    eff = result.effective_lr
    if not eff:
        return name
    first, peak, last = eff["first"], eff["peak"], eff["last"]
    middle = f" → {peak:.2g}" if peak > 1.05 * max(first, last) else ""
    effective = f"{first:.2g}{middle} → {last:.2g}"
    return f"{name} (effective lr {effective})" if one_line else f"{name}\neffective lr\n{effective}"


def _status(result: RunResult) -> str:
    if result.status == "finished":
        return ""
    if result.status == "diverged":
        return f"[red]diverged at step {result.step}[/red]"
    return f"[yellow]{result.status} at step {result.step}/{result.steps}[/yellow]"


def summary_table(result: RunResult) -> Table:
    """Final train/val loss, wall time, throughput, peak memory and optimizer state bytes of one run."""
    spec = result.spec
    table = Table(title=f"summary: {escape(result.name)}", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("optimizer", spec.optimizer.TYPE),
        ("schedule", schedule_cell(result, one_line=True)),
        ("task", escape(f"{spec.train.task} on {result.data}")),
        ("steps", f"{result.step} of {result.steps}" + (f"  ({_status(result)})" if _status(result) else "")),
        (f"final train loss (mean of last {TRAIN_LOSS_WINDOW} steps)", _loss(result.train_loss)),
        ("final validation loss", _loss(result.val_loss)),
        ("best validation loss", _loss(result.best_val_loss)),
        *([("final validation accuracy", _accuracy(result.val_accuracy))] if result.val_accuracy is not None else []),
        ("wall time", f"{result.wall_time:.1f} s"),
        (f"throughput ({result.unit}/s)", f"{result.tokens_per_second:,.0f}" if math.isfinite(result.tokens_per_second)
         else "-"),
        (f"peak memory ({result.peak_memory_kind})", format_bytes(result.peak_memory)),
        ("optimizer state", format_bytes(result.state_bytes)),
        ("model parameters", f"{result.n_params:,}"),
    ]
    if result.skipped_steps is not None:
        rows.append(("skipped steps", f"{result.skipped_steps} of {result.step}"))
    rows.append(("output", escape(str(result.out))))
    for row in rows:
        table.add_row(*row)
    return table


def rank(results: Sequence[RunResult]) -> list[RunResult]:
    """Best final validation loss first; runs without one (diverged, interrupted early) last; equal losses in
    the order given (not by time, which varies between runs: the table of a rerun stays the same)."""
    def key(r: RunResult) -> tuple[int, float]:
        finished = r.status in ("finished", "stopped") and math.isfinite(r.val_loss)
        return (0 if finished else 1, r.val_loss if math.isfinite(r.val_loss) else math.inf)

    return sorted(results, key=key)


def ranking_table(results: Sequence[RunResult]) -> Table:
    """The comparison, ranked by final validation loss (peak memory is in compare.json and each summary.json)."""
    ranked = rank(results)
    first = ranked[0] if ranked else None
    title = "optreg compare: ranked by final validation loss"
    if first is not None:
        t = first.spec.train
        title += f" ({t.task}, {t.steps} steps, {t.batch_label}, seed {t.seed})"
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("#", "right"), ("spec", "left"), ("optimizer", "left"), ("schedule", "left"),
        ("val\nloss", "right"), ("train\nloss", "right"), ("time", "right"), ("optimizer\nstate", "right"),
    ):
        if column in ("spec", "optimizer", "schedule"):  # long names fold onto a second line
            table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        else:  # numbers stay whole
            table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    accuracy = any(r.val_accuracy is not None for r in results)
    if accuracy:
        table.add_column("val\nacc", justify="right", no_wrap=True)
    skips = any(r.skipped_steps is not None for r in results)
    if skips:
        table.add_column("skipped\nsteps", justify="right", no_wrap=True)
    notes = any(_status(r) for r in results)
    if notes:
        table.add_column("note")
    for i, r in enumerate(ranked, 1):
        cells = [
            str(i), escape(r.name), r.spec.optimizer.TYPE, schedule_cell(r), _loss(r.val_loss), _loss(r.train_loss),
            f"{r.wall_time:.1f} s", format_bytes(r.state_bytes),
        ]
        if accuracy:
            cells.append(_accuracy(r.val_accuracy))
        if skips:
            cells.append("-" if r.skipped_steps is None else str(r.skipped_steps))
        if notes:
            cells.append(_status(r))
        table.add_row(*cells)
    return table
