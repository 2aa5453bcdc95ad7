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

__all__ = ["ema", "plot_compare", "plot_run", "plots_available"]

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

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    curves = _lr_curves(history, result.group_names)
    for label, values in curves:
        ax.plot(steps, values, linewidth=2, label=label)
    _log_if_wide(ax, [v for _, vs in curves for v in vs])
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{result.name}: {result.spec.scheduler.TYPE} schedule")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", title="param group" if len(curves) > 1 else None)
    fig.tight_layout()
    path = result.out / "lr.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    return written


def _lr_curves(history: list[dict[str, Any]], group_names: list[str]) -> list[tuple[str, list[float]]]:
    """One curve per distinct LR sequence; groups that share one are named together."""
    n_groups = max((len(r.get("lrs", [])) for r in history), default=0) or 1
    per_group = [[r["lrs"][g] if "lrs" in r else r["lr"] for r in history] for g in range(n_groups)]
    names = group_names if len(group_names) == n_groups else [f"group {g}" for g in range(n_groups)]
    merged: dict[tuple[float, ...], list[str]] = {}
    for name, values in zip(names, per_group):
        merged.setdefault(tuple(values), []).append(name)
    if len(merged) == 1:
        return [("all groups" if n_groups > 1 else "lr", list(next(iter(merged))))]
    return [(", ".join(labels), list(values)) for values, labels in merged.items()]


def _log_if_wide(ax: Any, values: list[float]) -> None:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")


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

    fig, ax = plt.subplots(figsize=(10, 4.8 + 0.3 * math.ceil(len(results) / 2)), dpi=110, layout="constrained")
    all_values = []
    for i, result in enumerate(results):
        steps, lrs = _series(result.history, "lr")
        all_values += lrs
        ax.plot(steps, lrs, color=colors[i % len(colors)], linestyle=_STYLES[i % len(_STYLES)], linewidth=2,
                label=_run_label(result))
    _log_if_wide(ax, all_values)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate (largest param group)")
    ax.set_title("learning-rate schedules")
    ax.grid(alpha=0.3)
    _legend_below(fig, ax, min(len(results), 2))
    path = out / "lr.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    return written


def _run_label(result: RunResult) -> str:
    return f"{result.name} ({result.spec.optimizer.TYPE}, {result.spec.scheduler.TYPE})"
