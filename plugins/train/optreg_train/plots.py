"""``loss.png`` and ``lr.png`` of a run, and the overlaid curves of ``optreg compare`` (matplotlib, Agg).

matplotlib is optreg-train's ``plot`` extra (``pip install 'optreg-train[plot]'``); without
it runs still train and write their metrics, and a note says the plots were skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from optreg_train.results import RunResult

__all__ = ["compare_lr_figure", "ema", "plot_compare", "plot_run", "plots_available", "run_lr_figure"]

_warned = False


def plots_available(console: Console | None = None) -> bool:
    """Whether matplotlib can be imported (prints a one-time note when it cannot)."""
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
    except ImportError:
        if not _warned and console is not None:
            console.print("matplotlib is not installed: no plots (pip install 'optreg-train[plot]')", style="yellow",
                          markup=False)
        _warned = True
        return False
    return True


def ema(values: Sequence[float], span: int) -> list[float]:
    """Exponential moving average with bias correction (so the first points are not pulled to 0)."""
    alpha = 2.0 / (span + 1)
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        avg = (1 - alpha) * avg + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(avg / weight)
    return out


def _span(n: int) -> int:
    return max(1, min(50, n // 20))


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for record in history:
        if key in record:
            steps.append(record["step"])
            value = record[key]
            values.append(math.nan if value is None else float(value))
    return steps, values


def _loss_label(unit: str) -> str:
    return "cross-entropy loss (nats per character)" if unit == "tokens" else "cross-entropy loss (nats)"


def _zoom(ax: Any, curves: list[list[float]], skip_fraction: float = 0.05) -> None:
    """Leave out the first few percent of steps from the y-range, where every loss is still near its start."""
    tails = []
    for curve in curves:
        finite = [v for v in curve[int(len(curve) * skip_fraction) :] if math.isfinite(v)]
        tails += finite
    if len(tails) >= 2:
        low, high = min(tails), max(tails)
        pad = 0.05 * (high - low or abs(high) or 1.0)
        ax.set_ylim(low - pad, high + pad)


def plot_run(result: RunResult, *, console: Console | None = None) -> list[Path]:
    """Write ``loss.png`` and ``lr.png`` in the run's directory; returns the paths written."""
    if not plots_available(console):
        return []
    import matplotlib.pyplot as plt

    history = result.history
    written = []
    steps, losses = _series(history, "loss")
    val_steps, val_losses = _series(history, "val_loss")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="train loss (per step)")
    span = _span(len(losses))
    ax.plot(steps, ema(losses, span), color="tab:blue", linewidth=2, label=f"train loss (EMA over ~{span} steps)")
    if val_steps:
        ax.plot(val_steps, val_losses, color="tab:red", marker="o", linewidth=2, label="validation loss")
    _zoom(ax, [losses, val_losses])
    ax.set_xlabel("step")
    ax.set_ylabel(_loss_label(result.unit))
    spec = result.spec
    ax.set_title(f"{result.name}: {spec.optimizer.TYPE} / {spec.scheduler.TYPE} on {spec.train.task}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path = result.out / "loss.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)

    fig = run_lr_figure(result)
    path = result.out / "lr.png"
    fig.savefig(path)
    written.append(path)
    return written


def run_lr_figure(result: RunResult) -> Any:
    """The ``lr.png`` of one run: the scheduled LR of every distinct param group and, where the optimizer
    sets its own step size, its effective LR (dashed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    steps = [r["step"] for r in result.history]
    values: list[float] = []
    scheduled = _lr_curves(result.history, result.group_names)
    effective = _lr_curves(result.history, result.group_names, effective=True)
    for i, (label, curve) in enumerate(scheduled):
        ax.plot(steps, curve, color=f"C{i}", linewidth=2, label=f"{label} (scheduled)" if effective else label)
        values += curve
    for i, (label, curve) in enumerate(effective):
        ax.plot(steps, curve, color=f"C{i}", linewidth=2, linestyle="--", label=f"{label} (effective)")
        values += curve
    _lr_axis(ax, values)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    spec = result.spec
    ax.set_title(f"{result.name}: {spec.scheduler.TYPE} schedule"
                 + (f" and {spec.optimizer.TYPE}'s own step size" if effective else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", title="param group" if len(scheduled) > 1 or effective else None)
    return fig


def _lr_curves(history: list[dict[str, Any]], group_names: list[str], *,
               effective: bool = False) -> list[tuple[str, list[float]]]:
    """One curve per distinct LR sequence (the effective LR's with ``effective``; none when the optimizer
    reports none); groups that share one are named together."""
    one, every = ("effective_lr", "effective_lrs") if effective else ("lr", "lrs")
    if not any(one in r for r in history):
        return []
    n_groups = max(len(group_names), max((len(r.get(every, [])) for r in history), default=0), 1)

    def value(record: dict[str, Any], g: int) -> float:
        v = record[every][g] if every in record else record.get(one)
        return math.nan if v is None else float(v)

    per_group = [[value(r, g) for r in history] for g in range(n_groups)]
    names = group_names if len(group_names) == n_groups else [f"group {g}" for g in range(n_groups)]
    merged: dict[tuple[float, ...], list[str]] = {}
    for name, values in zip(names, per_group):
        merged.setdefault(tuple(values), []).append(name)
    if len(merged) == 1:
        return [("all groups" if n_groups > 1 else "lr", list(next(iter(merged))))]
    return [(", ".join(labels), list(values)) for values, labels in merged.items()]


def _lr_axis(ax: Any, values: list[float]) -> None:
    """A log scale when the LRs span more than 30x, so small ones stay readable; with an LR of 0 among them
    (a warmup's first step) a symmetric-log scale, linear below the smallest positive LR, so 0 stays on
    the plot (a log scale drops it). A linear scale from 0 otherwise."""
    finite = [v for v in values if math.isfinite(v)]
    positive = [v for v in finite if v > 0]
    if positive and max(positive) / min(positive) > 30:
        if any(v <= 0 for v in finite):
            ax.set_yscale("symlog", linthresh=min(positive), linscale=0.5)
            ax.set_ylim(bottom=0)
        else:
            ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)


#: Line styles cycled with the colours, so runs whose curves coincide stay visible.
_STYLES = ("-", "--", "-.", ":")


def _legend_below(fig: Any, ax: Any, columns: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=9, frameon=False)


def plot_compare(results: Sequence[RunResult], out: Path, *, console: Console | None = None) -> list[Path]:
    """``loss.png`` (training and validation curves overlaid) and ``lr.png`` of a comparison."""
    if not results or not plots_available(console):
        return []
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10").colors
    written = []
    rows = math.ceil(len(results) / 3)
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(13, 5.2 + 0.3 * rows), dpi=110, layout="constrained")
    train_curves, val_curves = [], []
    for i, result in enumerate(results):
        style = {"color": colors[i % len(colors)], "linestyle": _STYLES[i % len(_STYLES)], "linewidth": 2}
        label = _run_label(result)
        steps, losses = _series(result.history, "loss")
        smooth = ema(losses, _span(len(losses)))
        train_curves.append(smooth)
        ax_train.plot(steps, smooth, label=label, **style)
        val_steps, val_losses = _series(result.history, "val_loss")
        val_curves.append(val_losses)
        ax_val.plot(val_steps, val_losses, marker="o", markersize=4, label=label, **style)
    span = _span(max(len(r.history) for r in results))
    _zoom(ax_train, train_curves)
    # The validation panel shows the finish: the last 60% of the run, where the ranking is decided.
    _zoom(ax_val, val_curves, skip_fraction=0.4)
    unit = results[0].unit
    ax_train.set_title(f"training loss (EMA over ~{span} steps)")
    ax_val.set_title("validation loss (held-out data; y-axis zoomed on the finish)")
    for ax in (ax_train, ax_val):
        ax.set_xlabel("step")
        ax.set_ylabel(_loss_label(unit))
        ax.grid(alpha=0.3)
    _legend_below(fig, ax_val, min(len(results), 3))
    task = results[0].spec.train.task
    fig.suptitle(f"optreg compare on {task}: same data, same order, same initial weights")
    path = out / "loss.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)

    fig = compare_lr_figure(results)
    path = out / "lr.png"
    fig.savefig(path)
    written.append(path)
    return written


def compare_lr_figure(results: Sequence[RunResult]) -> Any:
    """The ``lr.png`` of a comparison: every run's LR per distinct param group (Muon's AdamW groups too), the
    effective LR for optimizers that set their own step size (schedule-free warmup, Prodigy's ``d``)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    colors = colormaps["tab10"].colors
    curves = []
    for i, result in enumerate(results):
        effective = _lr_curves(result.history, result.group_names, effective=True)
        groups = effective or _lr_curves(result.history, result.group_names)
        steps = [r["step"] for r in result.history]
        for j, (group, values) in enumerate(groups):
            label = _run_label(result) + (f": {group}" if len(groups) > 1 else "") + (" effective" if effective else "")
            curves.append((i, j, steps, values, label))
    fig = Figure(figsize=(10, 4.8 + 0.3 * math.ceil(len(curves) / 2)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for i, j, steps, values, label in curves:
        ax.plot(steps, values, color=colors[i % len(colors)], linestyle=_STYLES[(i + j) % len(_STYLES)],
                linewidth=2 if j == 0 else 1.3, label=label)
    _lr_axis(ax, [v for *_, values, _ in curves for v in values])
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate (effective where the optimizer sets its own)")
    ax.set_title("learning rates: every param group of every run")
    ax.grid(alpha=0.3)
    _legend_below(fig, ax, min(len(curves), 2))
    return fig


def _run_label(result: RunResult) -> str:
    return f"{result.name} ({result.spec.optimizer.TYPE}, {result.spec.scheduler.TYPE})"
