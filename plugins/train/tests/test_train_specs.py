"""Every ready-to-run spec in specs/ makes the loss go down on the default task (char_lm).

Each spec runs as written (its schedule spans its own ``[train] steps``) except
that the model is a tiny transformer on short sequences. The run stops as soon
as the loss has clearly gone down, checked every few dozen steps: most specs
pass at the first check; parameter-free methods that start from a tiny step
size (D-Adaptation's ``d0``) may need a few more. A spec fails if its loss has
not gone down by the end of its run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from optreg_train import train_run
from optreg_train.metrics import read_metrics

import optreg

SPECS = sorted((Path(__file__).resolve().parents[3] / "specs").glob("*.toml"))
CHECK_EVERY = 40
#: Clearly down: the last steps' mean loss this many nats below the first step's (ln 96 = 4.56 is a uniform guess).
MARGIN = 0.5
SMALL = {"task": "char_lm", "seq_len": 32, "d_model": 32, "n_layers": 1, "n_heads": 2,
         "batch_size": 8, "eval_interval": CHECK_EVERY, "eval_batches": 2, "device": "cpu"}


def _missing_types(path: Path) -> list[str]:
    """Types the spec names that no installed plugin registers (a partial install, e.g. one plugin's venv)."""
    text = optreg.loading.parse_toml(path.read_text(), file=str(path))
    registry = optreg.get_registry()
    missing = []
    for kind in ("optimizer", "scheduler", "parallelism"):
        table = text.get(kind, {})
        names = [table.get("type")] + [table.get("inner", {}).get("type")] if isinstance(table, dict) else []
        missing += [n for n in names if isinstance(n, str) and registry.lookup(kind, n) is None]
    return missing


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_there_are_ready_to_run_specs():
    assert SPECS


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_loss_goes_down_on_the_default_task(path, tmp_path):
    missing = _missing_types(path)
    if missing:
        pytest.skip(f"needs a plugin that is not installed here (type {', '.join(map(repr, missing))})")
    spec = optreg.load_spec(path)
    data = optreg.convert.spec_to_dict(spec)
    data["train"] = {**data.get("train", {}), **SMALL}
    data["train"].pop("data", None)
    # A distributed example trains here in one process: this checks its optimizer and schedule; its
    # launch on several processes is the repo's test (tests/test_specs_dir.py).
    data["parallelism"] = {"type": "single"}
    small = optreg.parse_spec(data, file=str(path))
    out = tmp_path / path.stem
    done = 0
    while True:
        done = min(done + CHECK_EVERY, small.train.steps)
        result = train_run(small, out, stop_after=done, resume=done > CHECK_EVERY, show_progress=False, plots=False)
        assert result.step == done, result.status
        losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
        assert len(losses) == done and all(v is not None and math.isfinite(v) for v in losses), losses
        start, end = losses[0], sum(losses[-5:]) / 5
        if (end < start - MARGIN and result.val_loss < start - MARGIN) or done == small.train.steps:
            break
    assert end < start - MARGIN, f"train loss {start:.3f} -> {end:.3f} after {done} steps"
    assert result.val_loss < start - MARGIN, f"validation loss {result.val_loss:.3f} vs initial {start:.3f}"
