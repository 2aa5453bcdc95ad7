"""Every strategy on 2 processes (CPU, gloo; fsdp_tp on 4) gives the parameters of one process on the same
global batch, and docs/parallel.md's table of optimizers x strategies says what these runs show.

One ``torchrun`` launch per strategy runs every case (each launch costs a few seconds to start); the
single-process reference runs in this process. Equality is to float32 tolerance: the ranks' partial
sums (gradient all-reduce / reduce-scatter, DTensor norms) add in another order than one process.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

import optreg

pytestmark = pytest.mark.distributed

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dist_worker as W  # noqa: E402

from optreg.testing.distributed import launch  # noqa: E402

#: 10 float32 steps of gradients summed in another order: a few float32 ulps of the parameters per step.
ATOL = 2e-5
TP_PLAN = {"mlp_in": "colwise", "mlp_out": "rowwise"}
STRATEGIES: dict[str, dict[str, Any]] = {
    "ddp": {"type": "ddp"},
    "fsdp": {"type": "fsdp"},
    "fsdp_units": {"type": "fsdp", "shard_modules": ["mlp_in", "mlp_out", "head"]},
    "hsdp_1x2": {"type": "hsdp", "replicate": 1, "shard": 2},
    "hsdp_2x1": {"type": "hsdp", "replicate": 2, "shard": 1},
    "tp": {"type": "tp", "plan": TP_PLAN},
    "fsdp_tp": {"type": "fsdp_tp", "tp": 2, "plan": TP_PLAN},  # 4 processes: 2 data-parallel x 2 tensor-parallel
}
#: Processes per launch (2 unless a strategy's mesh needs more).
NPROC = {"fsdp_tp": 4}
#: The optimizers the issue names, each as a user would write it (the rest run with their defaults).
NAMED: dict[str, dict[str, Any]] = {
    "adamw": {"type": "adamw", "lr": 0.01},
    "lion": {"type": "lion", "lr": 1e-3},
    "signum": {"type": "signum", "lr": 1e-3},
    "prodigy": {"type": "prodigy"},
    "dadapt_adamw": {"type": "dadapt_adamw"},
    "dog": {"type": "dog"},
    "mechanic": {"type": "mechanic", "inner": {"type": "adamw", "lr": 0.01}},
    "momo": {"type": "momo", "lr": 0.1},
    "schedule_free_adamw": {"type": "schedule_free_adamw", "lr": 0.01},
    "skip_step_adamw": {"type": "skip_step_adamw", "lr": 0.01, "min_samples": 3},
}
#: Defaults that do not build (a wrapper that needs its inner optimizer's momentum off), or that make the
#: comparison measure rounding: ACProp's default eps (1e-16) lets a coordinate whose gradient is at float32
#: rounding level take a unit step (g / sqrt(s) ~ +-1) in the direction of that rounding, so tensor parallel's
#: other summation order moves a bias by 3e-4 in 10 steps (1.9e-5 with eps 1e-12, 3e-8 with 1e-8).
OTHERS: dict[str, dict[str, Any]] = {
    "schedule_free": {"type": "schedule_free", "inner": {"type": "adamw", "lr": 0.01, "betas": [0.0, 0.999]}},
    "acprop": {"type": "acprop", "eps": 1e-8},
    # GaLore at full rank: mlp_out's gradient feeds a LayerNorm, so it has a null direction whose singular vector
    # is rounding; the inner AdamW then takes unit steps along it (a 1e-7 nudge of the weights moves mlp_out by
    # 1e-3 in one process). Rank 2 keeps the well-separated directions (the same nudge: 2e-7).
    "galore": {"type": "galore", "rank": 2},
    # sam needs an inner optimizer; the harness steps it with a re-evaluating closure (step_input)
    "sam": {"type": "sam", "inner": {"type": "adamw", "lr": 0.01}},
    # skip-step with few samples, so the spike of step 7 is judged (the NaN step is skipped anyway)
    "skip_step_lion": {"type": "skip_step_lion", "lr": 1e-3, "min_samples": 3},
    "skip_step": {"type": "skip_step", "min_samples": 3, "inner": {"type": "adamw", "lr": 0.01}},
}
#: Optimizers the harness cannot run, and why (the docs table says so too).
CANNOT_RUN = {"sparse_adam": "steps sparse gradients only; the harness's models have dense ones (docs/torch.md)"}
#: Steps that a skip-step run must skip: a loss spike, then NaN gradients.
EVENTS = {"spike": [7], "nan": [8]}


def _optimizer_tables() -> dict[str, dict[str, Any]]:
    registry = optreg.get_registry()
    tables = {**NAMED, **OTHERS}
    for name in registry.names("optimizer"):
        if name not in tables:
            cls = registry.spec_class("optimizer", name)
            needs_inner = any(f.name == "inner" for f in attrs.fields(cls))
            tables[name] = {"type": name, **({"inner": {"type": "adamw", "lr": 0.01}} if needs_inner else {})}
    return tables


def _cases(strategy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cases = {}
    for name, table in _optimizer_tables().items():
        case: dict[str, Any] = {"optimizer": table, "parallelism": {**strategy, "timeout_s": 120}}
        if name.startswith("skip_step"):
            case["events"] = EVENTS
        if name.startswith("schedule_free"):
            case["eval_mode"] = True
        cases[name] = case
    return cases


def _launch(cases: dict[str, Any], workdir: Path, name: str, nproc: int = 2) -> dict[str, Any]:
    return launch(cases, workdir, nproc=nproc, name=name, worker=HERE / "dist_worker.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("dist")
    return {
        name: _launch(_cases(strategy), workdir, name, NPROC.get(name, 2)) for name, strategy in STRATEGIES.items()
    }


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    single = {name: {**case, "parallelism": {"type": "single"}} for name, case in _cases({"type": "single"}).items()}
    return W.run_cases(single, **W.HOOKS)


def _refusal(error: str, strategy: str) -> bool:
    """A clear refusal: an error type a user expects, that names the strategy it refuses."""
    kind = error.split(":", 1)[0]
    return kind in ("SpecError", "ValueError", "TypeError", "NotImplementedError") and strategy.split("_")[0] in error


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("optimizer", list(NAMED))
def test_two_ranks_equal_one_process(results, reference, strategy, optimizer):
    got, want = results[strategy][optimizer], reference[optimizer]
    assert "error" not in want, want["error"]
    assert "error" not in got, f"{optimizer} under {strategy} failed:\n{got.get('traceback', got['error'])}"
    worst = {n: W.max_difference(got["params"][n], want["params"][n]) for n in want["params"]}
    assert max(worst.values()) <= ATOL, f"{optimizer} under {strategy}: max |difference| per param {worst}"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_skip_step_skips_the_spike_and_the_nan_step_on_every_rank_alike(results, reference, strategy):
    for name in ("skip_step_adamw", "skip_step_lion", "skip_step"):
        want = reference[name]
        assert set(EVENTS["nan"]) <= set(want["skipped"]), f"{name} in one process took the NaN step: {want}"
        assert set(EVENTS["spike"]) <= set(want["skipped"]), f"{name} in one process took the spike: {want}"
        got = results[strategy][name]
        assert got.get("skipped") == want["skipped"], f"{name} under {strategy} skipped {got.get('skipped')}"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_registered_optimizer_is_equal_or_refused_clearly(results, reference, strategy):
    problems = []
    for optimizer, got in results[strategy].items():
        want = reference[optimizer]
        if optimizer in CANNOT_RUN:
            assert "error" in want, f"{optimizer} now runs in one process: drop it from CANNOT_RUN"
            continue
        if "error" in want:
            problems.append(f"{optimizer}: fails in one process: {want['error']}")
        elif "error" in got:
            if not _refusal(got["error"], STRATEGIES[strategy]["type"]):
                problems.append(f"{optimizer}: neither equal nor a clear refusal: {got['error'][:300]}")
        else:
            worst = max(W.max_difference(got["params"][n], want["params"][n]) for n in want["params"])
            if worst > ATOL:
                problems.append(f"{optimizer}: differs from one process by {worst:.3g}")
    assert not problems, f"under {strategy}:\n" + "\n".join(problems)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_the_state_estimate_is_each_ranks_state(results, strategy):
    """The optimizer-state estimate counts each rank's shard: from the sharded model as built, and from an
    unsharded model as ``optreg validate --world-size`` simulates the strategy, it equals (within 1%) the state
    rank 0 holds after the steps, for every optimizer the strategy runs."""
    wrong = {}
    for optimizer, got in results[strategy].items():
        if "error" in got:
            continue
        state = got["state"]
        for kind in ("estimate", "simulated"):
            low, high = state[kind]
            if not (0.99 * low <= state["measured"] <= 1.01 * high):
                wrong[f"{optimizer} ({kind})"] = f"{low}..{high} estimated, {state['measured']} held"
    assert not wrong, f"under {strategy}: {wrong}"


DOCS = Path(__file__).resolve().parents[3] / "docs" / "parallel.md"
#: The table's columns -> the runs that check them.
COLUMNS = {"ddp": ["ddp"], "fsdp": ["fsdp", "fsdp_units"], "hsdp": ["hsdp_1x2", "hsdp_2x1"], "tp": ["tp"],
           "fsdp_tp": ["fsdp_tp"]}


def _support_table() -> dict[str, dict[str, str]]:
    """docs/parallel.md's support table: optimizer -> {strategy column: cell}."""
    text = DOCS.read_text()
    rows = text[text.index("<!-- optreg:support-table"):].split("\n")[1:]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[2:]:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            table[name] = dict(zip(header[1:], cells[1:]))
    return table


def test_the_docs_table_names_every_optimizer_of_optreg_and_says_what_the_runs_show(results, reference):
    if not DOCS.exists():
        pytest.skip("docs/parallel.md is not in this checkout")
    table = _support_table()
    registry = optreg.get_registry()
    ours = [n for n in registry.names("optimizer")
            if registry.spec_class("optimizer", n).__module__.split(".")[0].startswith("optreg")]
    missing = [n for n in ours if n not in table]
    assert not missing, f"docs/parallel.md's support table does not list {missing}"
    wrong = []
    for name in ours:
        for column, runs in COLUMNS.items():
            cell = table[name][column]
            for run in runs:
                got, want = results[run][name], reference[name]
                if "error" in got:
                    shows = "refused" if _refusal(got["error"], STRATEGIES[run]["type"]) else "fails"
                else:
                    worst = max(W.max_difference(got["params"][n], want["params"][n]) for n in want["params"])
                    shows = "yes" if worst <= ATOL else "differs"
                if not cell.startswith(shows):
                    wrong.append(f"{name} under {run}: the table says {cell!r}, the run shows {shows}")
    assert not wrong, "\n".join(wrong)
