"""``optreg compare``: several specs on one task, same data, same order, same initial weights.

Every spec is validated, built and tried for one step on a throwaway copy before
the first real step (a bad spec stops the comparison at once). The ``[train]`` table of the first spec, with the command
line's overrides, is used for every run; specs whose own ``[train]`` differ are
named in a note. Each run writes its own directory under ``out`` (metrics,
resolved spec, checkpoint, summary; no per-run plots); the overlaid curves go
to ``out/loss.png`` and ``out/lr.png`` and the ranking to ``out/compare.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.markup import escape

from optreg.runspec import RunSpec
from optreg_train.loop import check_out_dir, make_progress, preflight, prepare_run, train_run
from optreg_train.plots import plot_compare
from optreg_train.report import rank, ranking_table
from optreg_train.results import RunResult
from optreg_train.tasks import load_task

__all__ = ["compare_specs", "run_names"]


def run_names(specs: Sequence[RunSpec]) -> list[str]:
    """A directory name per spec: the file's stem, made unique with a suffix when stems repeat."""
    names: list[str] = []
    for i, spec in enumerate(specs):
        base = Path(spec.source).stem if spec.source else f"spec{i + 1}"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def compare_specs(
    specs: Sequence[RunSpec],
    out: Path | str,
    *,
    console: Console | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
    plots: bool = True,
) -> list[RunResult]:
    """Train every spec with the first one's ``[train]`` table; print and return the results, best first."""
    console = console or Console()
    out = Path(out)
    if not specs:
        raise ValueError("compare needs at least one spec")
    common = specs[0].train
    names = run_names(specs)
    differing = [name for name, s in zip(names[1:], specs[1:]) if s.train != common]
    specs = [attrs.evolve(s, tables={**s.tables, "train": common}) for s in specs]
    task = load_task(common, file=specs[0].source)
    # Build everything and try one step first: a spec that cannot run stops the comparison before any training.
    for spec in specs:
        preflight(spec, task)
    for name in names:
        check_out_dir(out / name, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if differing:
        console.print(
            f"[yellow]note:[/yellow] {escape(', '.join(differing))} set other \\[train] options; every run uses "
            f"those of {escape(names[0])} (same task, seed, data and order)"
        )
    console.print(
        f"comparing {len(specs)} specs: {common.steps} steps of {common.task}, {common.batch_label}, "
        f"seed {common.seed}\ndata: {escape(task.source)}"
    )
    results: list[RunResult] = []
    progress = make_progress(console) if show_progress else None
    if progress is not None:
        progress.start()
    try:
        for name, spec in zip(names, specs):
            result = train_run(
                spec, out / name, name=name, console=console, progress=progress, show_progress=show_progress,
                overwrite=overwrite, plots=False, prepared=prepare_run(spec, task),
            )
            results.append(result)
            if result.status == "interrupted":
                break
    finally:
        if progress is not None:
            progress.stop()
    console.print(ranking_table(results))
    payload: dict[str, Any] = {
        "train": _train_dict(common),
        "runs": [r.to_json() for r in rank(results)],
    }
    (out / "compare.json").write_text(json.dumps(payload, indent=2) + "\n")
    if plots:
        written = plot_compare(results, out, console=console)
        if written:
            console.print("plots: " + escape(", ".join(str(p) for p in written)))
    interrupted = [r for r in results if r.status == "interrupted"]
    if interrupted:
        r = interrupted[0]
        console.print(
            f"[yellow]interrupted:[/yellow] {escape(r.name)} stopped at step {r.step} with a checkpoint; "
            f"continue it with `optreg train --resume {escape(str(r.out))}`"
        )
    return rank(results)


def _train_dict(train: Any) -> Mapping[str, Any]:
    from optreg.convert import spec_to_dict

    return spec_to_dict(train)
