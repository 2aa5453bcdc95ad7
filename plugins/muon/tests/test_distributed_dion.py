"""The distributed Dion (Ahn et al. 2025): sharded momentum, ``Q`` split like the columns, TSQR, equal to one process.

In this process: TSQR of row blocks against one QR of the whole, and the sharded step on one-rank meshes of
every layout (the same code path with trivial collectives). Launched (marked ``distributed``): the
``matrices`` model under fsdp, hsdp, tp (2 processes, one launch) and fsdp_tp, hsdp 2x2 (4 processes, one
launch), full and low rank, equal to one process, with no gather of a sharded tensor inside a step.

This file is also the launches' worker (``python -m torch.distributed.run ... test_distributed_dion.py``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from optreg.testing.distributed import launch, max_difference, run_cases, worker_main

HERE = Path(__file__).resolve()

# ---------------------------------------------------------------- no gather inside a step


class GatherInStep(RuntimeError):
    """A sharded tensor was gathered whole inside an optimizer step."""


@contextlib.contextmanager
def refuse_gathers() -> Iterator[None]:
    """Make ``DTensor.full_tensor`` and any ``redistribute`` from a shard to a replica raise: what gathering a
    sharded momentum or gradient whole (``optreg_muon.functional.sharded.whole``) goes through."""
    from torch.distributed.tensor import DTensor

    full_tensor, redistribute = DTensor.full_tensor, DTensor.redistribute

    def no_full_tensor(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise GatherInStep(f"full_tensor of a {tuple(self.shape)} DTensor ({self.placements}) in a step")

    def guarded_redistribute(self: Any, device_mesh: Any = None, placements: Any = None, **kwargs: Any) -> Any:
        for before, after in zip(self.placements, placements or ()):
            if before.is_shard() and after.is_replicate():
                raise GatherInStep(f"redistribute {self.placements} -> {tuple(placements)} in a step")
        return redistribute(self, device_mesh, placements, **kwargs)

    DTensor.full_tensor, DTensor.redistribute = no_full_tensor, guarded_redistribute
    try:
        yield
    finally:
        DTensor.full_tensor, DTensor.redistribute = full_tensor, redistribute


@contextlib.contextmanager
def count_collectives(counts: dict[str, list[int]]) -> Iterator[None]:
    """Record the elements each rank sends in every all-reduce / all-gather issued through ``torch.distributed``."""
    originals = {name: getattr(dist, name) for name in ("all_reduce", "all_gather_into_tensor")}

    def counting(name: str) -> Any:
        def call(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            sent = args[0] if name == "all_gather_into_tensor" else tensor  # (output, input) for the gather
            counts.setdefault(name, []).append(sent.numel())
            return originals[name](tensor, *args, **kwargs)

        return call

    for name in originals:
        setattr(dist, name, counting(name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)


def _before(case: dict[str, Any], model: nn.Module, optimizer: Any, strategy: Any) -> None:
    """Before the steps: resume ``case["load"]`` (optreg train's checkpoint, of any world size), then guard the
    steps (:func:`_guard_steps`)."""
    if case.get("load"):
        from optreg_train.checkpoint import load_run_state

        from optreg.parallel import initialize_state

        initialize_state(optimizer)
        load_run_state(Path(case["load"]), model, optimizer, strategy)
    _guard_steps(optimizer)


def _guard_steps(optimizer: Any) -> None:
    """Every optimizer step refuses gathers and counts the collectives it issues."""
    step = optimizer.step
    counts: dict[str, list[int]] = {}
    optimizer._test_counts = counts

    def guarded(*args: Any, **kwargs: Any) -> Any:
        with refuse_gathers(), count_collectives(counts):
            return step(*args, **kwargs)

    optimizer.step = guarded
    optimizer._test_start = time.perf_counter()


def _after(case: dict[str, Any], model: nn.Module, optimizer: Any, strategy: Any) -> None:
    """After the steps: :func:`_record`, then save optreg train's checkpoint in ``case["save"]``."""
    if case.get("record"):
        _record(case, model, optimizer)
    if case.get("save"):
        from optreg_train.checkpoint import save_run_state

        Path(case["save"]).mkdir(parents=True, exist_ok=True)
        save_run_state(Path(case["save"]), model, optimizer, strategy, {"step": case.get("stop", 10)})


def _record(case: dict[str, Any], model: nn.Module, optimizer: Any) -> None:
    """The whole ``Q`` and momentum of every matrix, the layouts of its state, the collectives (rank 0 writes)."""
    seconds = time.perf_counter() - getattr(optimizer, "_test_start", time.perf_counter())
    names = {p: n.removeprefix("module.") for n, p in model.named_parameters()}
    out: dict[str, Any] = {"counts": getattr(optimizer, "_test_counts", {}), "seconds": seconds, "state": {}}
    for p, state in optimizer.state.items():
        if "Q" not in state:
            continue
        entry = {}
        for key, t in (("Q", state["Q"]), ("momentum_buffer", state["momentum_buffer"]), ("param", p)):
            entry[key + "_layout"] = str(tuple(t.placements)) if hasattr(t, "placements") else "plain"
            if key != "param":
                entry[key] = (t.full_tensor() if hasattr(t, "full_tensor") else t).tolist()
        out["state"][names[p]] = entry
    if not dist.is_initialized() or dist.get_rank() == 0:
        Path(case["record"]).write_text(json.dumps(out))


HOOKS = {"before": _before, "after": _after}

# ---------------------------------------------------------------- TSQR


def _blocks(P: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    assert sum(sizes) == P.shape[0]
    return list(P.split(sizes))


@pytest.mark.parametrize("sizes", [[7, 5], [3, 0, 9], [1, 1, 10], [4, 4, 4]])
@pytest.mark.parametrize("deficient", [False, True])
def test_tsqr_of_row_blocks_is_the_sign_fixed_qr_of_the_whole(sizes: list[int], deficient: bool) -> None:
    """Blocks with fewer rows than r, none, or many: their TSQR is the unique QR (diagonal of R >= 0) of the
    whole. Float64 and a well-conditioned P, so the two algorithms agree to 1e-12; a rank-deficient P (rank 3
    of 4) still gets an orthonormal basis whose span holds P, as Householder QR gives."""
    from optreg_muon.functional.dion_distributed import local_qr, tsqr_finish
    from optreg_muon.functional.matrix import dion_qr

    g = torch.Generator().manual_seed(sum(sizes) + deficient)
    P = torch.randn(sum(sizes), 4, generator=g, dtype=torch.float64)
    if deficient:
        P[:, 3] = P[:, 0] - 2 * P[:, 1]
    parts = [local_qr(b) for b in _blocks(P, sizes)]
    gathered = torch.cat([block for _, block in parts])  # what the all-gather gives every rank
    got = torch.cat([tsqr_finish(Qi, gathered, i) for i, (Qi, _) in enumerate(parts)])
    assert got.shape == P.shape
    assert torch.allclose(got.T @ got, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(got @ (got.T @ P), P, atol=1e-12)  # P lies in the span
    whole = dion_qr(P)
    assert torch.all(torch.diagonal(whole.T @ P)[:3] > 0)  # R = Q^T P has a non-negative diagonal
    if not deficient:
        assert torch.allclose(got, whole, atol=1e-12)
    else:  # the 4th column is any unit vector orthogonal to P: the first 3 are unique
        assert torch.allclose(got[:, :3], whole[:, :3], atol=1e-12)


# ---------------------------------------------------------------- the sharded step on one-rank meshes


@pytest.fixture(scope="module")
def one_rank() -> Iterator[None]:
    """A one-process gloo group: DTensors and device meshes without torchrun."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialized")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


#: mesh dimension names, placements of the matrices (as optreg-parallel's strategies lay them out).
LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fsdp": (("shard",), ("S0",)),
    "hsdp": (("replicate", "shard"), ("R", "S0")),
    "tp_colwise": (("tp",), ("S0",)),
    "tp_rowwise": (("tp",), ("S1",)),
    "fsdp_tp_colwise": (("shard", "tp"), ("S0", "S0")),
    "fsdp_tp_rowwise": (("shard", "tp"), ("S0", "S1")),
}


def _placements(codes: tuple[str, ...]) -> list[Any]:
    from torch.distributed.tensor import Replicate, Shard

    return [Replicate() if c == "R" else Shard(int(c[1])) for c in codes]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_sharded_step_on_one_rank_meshes_equals_plain_tensors_and_keeps_the_layouts(
    one_rank: None, layout: str
) -> None:
    """With the strategy's meshes the step takes the sharded path (no gather: it would raise), ``Q`` is a
    DTensor split like the columns where they are split (else a plain whole ``Q``), the momentum keeps the
    parameter's layout, and the numbers are plain tensors' (1e-6: one rank runs the same products, but on
    local views whose strides may pick other kernels). A deep copy (no meshes) continues on the exact
    gather-whole path from the sharded state, to the same numbers."""
    from optreg_muon import Dion
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    names, codes = LAYOUTS[layout]
    mesh = init_device_mesh("cpu", (1,) * len(names), mesh_dim_names=names)
    meshes = {name: mesh[name] if len(names) > 1 else mesh for name in names}
    torch.manual_seed(0)
    shapes = [(5, 6), (6, 5), (1, 5), (4, 2, 3) if "S1" not in codes else (4, 6)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(6)]
    plain = [nn.Parameter(t.clone()) for t in start]
    sharded = [nn.Parameter(distribute_tensor(t.clone(), mesh, _placements(codes))) for t in start]
    options = {"lr": 0.05, "weight_decay": 0.1, "cautious_wd": True, "rank_fraction": 0.5, "power_iters": 2}
    opt_plain, opt_sharded = Dion(plain, **options), Dion(sharded, **options, meshes=meshes)
    for i, step_grads in enumerate(grads):
        if i == 3:  # continue on a copy: no meshes, the gather-whole path, from the sharded state
            opt_sharded_copy = copy.deepcopy({"opt": opt_sharded, "params": sharded})
            opt_sharded, sharded = opt_sharded_copy["opt"], opt_sharded_copy["params"]
            assert all(m is None for m in opt_sharded.meshes.values())
        for p, q, g in zip(plain, sharded, step_grads):
            p.grad = g.clone()
            q.grad = distribute_tensor(g.clone(), mesh, _placements(codes))
        opt_plain.step()
        if i < 3:
            with refuse_gathers():
                opt_sharded.step()
            for q in sharded:
                state = opt_sharded.state[q]
                assert state["momentum_buffer"].placements == q.placements
                split_columns = "S1" in codes
                assert hasattr(state["Q"], "placements") == split_columns
                if split_columns:
                    assert tuple(state["Q"].placements) == tuple(
                        Shard(0) if c == "S1" else _placements(("R",))[0] for c in codes
                    )
        else:
            opt_sharded.step()
    for p, q in zip(plain, sharded):
        assert torch.allclose(p.detach(), q.detach().full_tensor(), atol=1e-6, rtol=0)
        for key in ("Q", "momentum_buffer"):
            other = opt_sharded.state[q][key]
            other = other.full_tensor() if hasattr(other, "full_tensor") else other
            assert torch.allclose(opt_plain.state[p][key], other, atol=1e-6, rtol=0), key


def test_the_sharded_step_refuses_to_guess_a_layout_it_does_not_handle(one_rank: None) -> None:
    """Layouts outside the distributed algorithm take the gather-whole path (``None``): no meshes (a copy),
    a mesh dimension that is not the strategy's, a split trailing dimension of a 3-D parameter."""
    from optreg_muon.functional.dion_distributed import sharded_dion
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (1,), mesh_dim_names=("shard",))
    p = distribute_tensor(torch.randn(4, 6), mesh, [Shard(0)])
    assert sharded_dion(p, {"shard": mesh}) is not None
    assert sharded_dion(torch.randn(4, 6), {"shard": mesh}) is None
    assert sharded_dion(p, {"shard": None}) is None
    assert sharded_dion(p, {"tp": mesh}) is None
    assert sharded_dion(distribute_tensor(torch.randn(2, 3, 4), mesh, [Shard(1)]), {"shard": mesh}) is None


# ---------------------------------------------------------------- launched: equal to one process

#: Largest |difference| from one process after 10 steps, by rank and by what is compared. The ranks add
#: partial sums (gradients, ``B Q``, ``B^T P``) in another order and orthonormalize ``P`` by another
#: algorithm (TSQR), so each step differs by float32 rounding times the conditioning of the power iteration.
#: At low rank (the leading directions, well separated) that stays at float32 level: measured at most 9e-7
#: (params), 3e-6 (``Q``), 6e-7 (momentum); the bound is optreg-parallel's equivalence tolerance. At full rank
#: the 8 x 8 blocks' smallest singular values (the model sees a batch of 8) make the last directions of ``P``
#: and ``R`` known to about ``eps * s_max / s_min`` only: measured up to 9e-5 (params), 6e-4 (``Q``), 7e-6
#: (momentum), as the exact gather-whole path does (6e-5 and 6e-4 under fsdp: the gradients' rounding
#: amplified, not the sharding). Every bound is far below one step (``lr * sqrt(max(1, m/n)) * |P Q^T|``,
#: about 7e-3 an entry), which a missing reduction or a wrong shard of ``Q`` would change.
TOLERANCE = {
    "full": {"params": 3e-4, "momentum_buffer": 1e-4, "Q": 5e-3},
    "low": {"params": 2e-5, "momentum_buffer": 2e-5, "Q": 2e-5},
}
TP_PLAN = {"mlp_in": "colwise", "mlp_out": "rowwise"}
STRATEGIES_2 = {
    "fsdp": {"type": "fsdp"},
    "hsdp_1x2": {"type": "hsdp", "replicate": 1, "shard": 2},
    "tp": {"type": "tp", "plan": TP_PLAN},
}
STRATEGIES_4 = {
    "fsdp_tp": {"type": "fsdp_tp", "tp": 2, "plan": TP_PLAN},
    "hsdp_2x2": {"type": "hsdp", "replicate": 2, "shard": 2},
}
OPTIMIZERS = {
    "full": {"type": "dion", "lr": 0.02, "rank_fraction": 1.0},
    "low": {"type": "dion", "lr": 0.02, "rank_fraction": 0.5, "power_iters": 2, "weight_decay": 0.1,
            "cautious_wd": True},
}


def _cases(strategies: dict[str, Any], workdir: Path) -> dict[str, dict[str, Any]]:
    return {
        f"{s}-{o}": {"optimizer": table, "parallelism": {**strategy, "timeout_s": 120}, "model": "matrices",
                     "record": str(workdir / f"{s}-{o}.json")}
        for s, strategy in strategies.items() for o, table in OPTIMIZERS.items()
    }


#: The checkpoint round trips (optreg train's: torch.distributed.checkpoint shards on 2 ranks, one file in one
#: process) under tp, where the rowwise matrix's ``Q`` is a ``DTensor`` split over ``tp``.
CHECKPOINT_STRATEGY = STRATEGIES_2["tp"]


def _checkpoint_case(parallelism: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"optimizer": OPTIMIZERS["low"], "parallelism": parallelism, "model": "matrices", **extra}


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both launches (2 and 4 processes), the one-process reference of every optimizer, and the checkpoint
    round trips 1 -> 2 and 2 -> 1 processes (the 2-process halves ride in the 2-process launch)."""
    workdir = tmp_path_factory.mktemp("dion")
    out: dict[str, Any] = {"workdir": workdir, "seconds": {}}
    checkpoints = importlib.util.find_spec("optreg_train") is not None
    extra: dict[str, dict[str, Any]] = {}
    if checkpoints:
        saved = run_cases({"one": _checkpoint_case({"type": "single"}, stop=5, save=str(workdir / "one"))}, **HOOKS)
        assert "error" not in saved["one"], saved["one"].get("traceback")
        extra = {
            "checkpoint-save-on-2": _checkpoint_case(CHECKPOINT_STRATEGY, stop=5, save=str(workdir / "two")),
            "checkpoint-load-on-2": _checkpoint_case(CHECKPOINT_STRATEGY, start=5, load=str(workdir / "one")),
        }
    for nproc, strategies in ((2, STRATEGIES_2), (4, STRATEGIES_4)):
        start = time.perf_counter()
        cases = {**_cases(strategies, workdir), **(extra if nproc == 2 else {})}
        out.update(launch(cases, workdir, nproc=nproc, name=f"dion{nproc}", worker=HERE))
        out["seconds"][nproc] = time.perf_counter() - start
    single = {f"single-{o}": {"optimizer": t, "parallelism": {"type": "single"}, "model": "matrices",
                              "record": str(workdir / f"single-{o}.json")} for o, t in OPTIMIZERS.items()}
    if checkpoints:
        single["checkpoint-load-on-1"] = _checkpoint_case({"type": "single"}, start=5, load=str(workdir / "two"))
    out.update(run_cases(single, **HOOKS))
    return out


def _record_of(launched: dict[str, Any], case: str) -> dict[str, Any]:
    return json.loads((launched["workdir"] / f"{case}.json").read_text())


CASES = [f"{s}-{o}" for s in (*STRATEGIES_2, *STRATEGIES_4) for o in OPTIMIZERS]


@pytest.mark.distributed
@pytest.mark.parametrize("case", CASES)
def test_sharded_dion_equals_one_process_without_gathering(launched: dict[str, Any], case: str) -> None:
    """Parameters, the whole ``Q`` and the momentum after 10 steps equal one process's (``TOLERANCE``); no step
    gathered a sharded tensor (the guard raises: the case would be an error); ``Q`` is split over ``tp``
    exactly for the rowwise matrix and the momentum is sharded like its parameter."""
    rank = case.rsplit("-", 1)[1]
    got, want, tolerance = launched[case], launched["single-" + rank], TOLERANCE[rank]
    assert "error" not in want, want.get("traceback")
    assert "error" not in got, f"{case} failed:\n{got.get('traceback', got['error'])}"
    worst = {n: max_difference(got["params"][n], want["params"][n]) for n in want["params"]}
    assert max(worst.values()) <= tolerance["params"], f"{case}: max |difference| per param {worst}"
    record, reference = _record_of(launched, case), _record_of(launched, "single-" + rank)
    assert record["state"].keys() == reference["state"].keys()
    for name, entry in record["state"].items():
        for key in ("Q", "momentum_buffer"):
            difference = max_difference(entry[key], reference["state"][name][key])
            assert difference <= tolerance[key], f"{case}: {name} {key} differs by {difference}"
        assert entry["momentum_buffer_layout"] == entry["param_layout"]  # sharded like its parameter
        layout = entry["param_layout"]
        if "Shard(dim=1)" in layout:  # Q's rows split like the columns, replicated over the rows' splits
            assert entry["Q_layout"] == layout.replace("Shard(dim=0)", "Replicate()").replace(
                "Shard(dim=1)", "Shard(dim=0)"), (name, entry["Q_layout"])
        else:  # columns not split: Q whole on every rank
            assert entry["Q_layout"] == "plain", (name, entry["Q_layout"])
    if "tp" in case:  # the rowwise matrix's columns are split over tp
        assert "Shard(dim=1)" in record["state"]["mlp_out.weight"]["param_layout"]


@pytest.mark.distributed
def test_the_collectives_are_low_rank(launched: dict[str, Any]) -> None:
    """Under fsdp (rows split, columns whole) a step of each of the 17 matrices issues, per power iteration,
    one all-reduce of ``R``'s partial sums (``n x r``) and one all-gather of TSQR's ``r x r`` factor: at
    rank 0.5 at most 8 x 4 = 32 elements a collective, half an 8 x 8 block (gathering a momentum whole
    would send its shard, 32, and receive 64). Nothing else: ``B Q`` and the column norms need no
    reduction when the columns are whole."""
    counts = _record_of(launched, "fsdp-low")["counts"]
    steps, matrices, power_iters = 10, 17, OPTIMIZERS["low"]["power_iters"]
    assert len(counts["all_reduce"]) == len(counts["all_gather_into_tensor"]) == steps * matrices * power_iters
    assert max(counts["all_reduce"]) == 8 * 4 and max(counts["all_gather_into_tensor"]) == (4 + 1) * 4, counts


@pytest.mark.distributed
@pytest.mark.parametrize("resumed", ["checkpoint-load-on-2", "checkpoint-load-on-1"])
def test_a_checkpoint_moves_between_one_and_two_processes(launched: dict[str, Any], resumed: str) -> None:
    """Saved after 5 steps in one process and resumed on 2 ranks under tp (the whole ``Q`` laid out as the
    rowwise matrix's columns), and saved on 2 ranks (``Q`` a split ``DTensor``) and resumed in one process:
    the 10 steps equal one process's unbroken run (the low-rank tolerance)."""
    if resumed not in launched:
        pytest.skip("the checkpoints are optreg train's (optreg-train is not installed)")
    assert "error" not in launched["checkpoint-save-on-2"], launched["checkpoint-save-on-2"].get("traceback")
    got, want = launched[resumed], launched["single-low"]
    assert "error" not in got, got.get("traceback")
    worst = {n: max_difference(got["params"][n], want["params"][n]) for n in want["params"]}
    assert max(worst.values()) <= TOLERANCE["low"]["params"], f"{resumed}: {worst}"


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2], **HOOKS)
