"""Muon and NorMuon with the Newton-Schulz work split across 2 ranks (ddp, fsdp, hsdp) equal one process.

One ``torchrun`` launch runs every case (this file is its worker: the hooks below count the matrices each
rank orthogonalizes and write what each rank did); the single-process references run in this process.
The "matrices" model has 12 equal 8x8 blocks (one batch split between the ranks), a 5-row matrix (uneven
shards) and a 1-row one (no rows on rank 1); "matrices_blocks" adds a 3-D parameter (flattened, or a batch
of matrices with ``flatten = false``), row blocks with unequal shapes (``split_sizes``) and heads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from optreg.testing.distributed import MODELS, Matrices, launch, max_difference, run_cases, worker_main

pytestmark = pytest.mark.distributed

HERE = Path(__file__).resolve()


class _Cube(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 2, 4) / 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight.reshape(8, 8).T


class MatricesBlocks(Matrices):
    """The "matrices" model plus a 3-D parameter ``cube.weight`` (8 x 2 x 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.cube = _Cube()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        h = h + 0.3 * torch.tanh(self.cube(h))
        for block in self.blocks:
            h = h + 0.5 * torch.tanh(block(h))
        h = h + self.mlp_out(nn.functional.gelu(self.mlp_in(h)))
        return self.tiny(torch.tanh(self.odd(h)))


MODELS["matrices_blocks"] = MatricesBlocks

STRATEGIES: dict[str, dict[str, Any]] = {
    "ddp": {"type": "ddp"},
    "fsdp": {"type": "fsdp"},
    "hsdp_1x2": {"type": "hsdp", "replicate": 1, "shard": 2},
    "hsdp_2x1": {"type": "hsdp", "replicate": 2, "shard": 1},
}
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "muon": {"type": "muon"},
    "muon_f32": {"type": "muon", "ns_dtype": "float32"},
    "normuon": {"type": "normuon"},
    "normuon_f32": {"type": "normuon", "ns_dtype": "float32"},
}
#: Row blocks of unequal shapes (2 and 6 rows of 8: the boundary inside rank 0's rows), per-head blocks, and the
#: 3-D parameter as a batch of 2 x 4 matrices.
BLOCKS = [
    {"params": ["mlp_out.weight"], "split_sizes": [2, 6]},
    {"params": ["blocks.*"], "num_heads": 2},
    {"params": ["cube.weight"], "flatten": False},
]
#: 10 float32 steps: gradients summed in another order (all-reduce / reduce-scatter) and float32 Newton-Schulz
#: batched differently (a rank runs 6 of the 12 blocks in one batch, a shape's only matrix unbatched) give a
#: few float32 ulps of the parameters per step, as optreg-parallel's equivalence test allows.
ATOL_F32 = 2e-5
#: bfloat16 Newton-Schulz (the default): the float32 differences above (1e-7 relative: gradient sums, and
#: NorMuon's Frobenius norm summed from row statistics on the ranks) flip roundings of the bfloat16 iteration
#: (an ulp is 2^-8 relative), and each flip changes the next steps' gradients: 10 steps of that grew to 2e-4
#: (Muon) and 1.4e-3 (NorMuon, whose per-row normalisation amplifies small rows) on AMD EPYC with native
#: bf16, against about 4e-3 for one step's update of an entry. The float32 cases above check exactness.
ATOL_BF16 = 3e-3
#: The documented distance of one "local" step from the exact one (docs/muon.md, "## Distributed"): the
#: relative Frobenius distance of the matrices' updates of one float32 Muon step on the "matrices" model under
#: fsdp on 2 ranks. It is a property of the model and the shards, not of rounding: the band is wide enough
#: for any machine's float32 and narrow enough to catch "local" turning exact or broken.
LOCAL_DISTANCE = 0.765
LOCAL_BAND = 0.05


def _cases(report: str) -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    for s, strategy in STRATEGIES.items():
        for o, optimizer in OPTIMIZERS.items():
            cases[f"{o}-{s}"] = {"optimizer": optimizer, "parallelism": strategy, "model": "matrices"}
    for s in ("ddp", "fsdp", "hsdp_1x2"):
        for o in ("muon_f32", "normuon_f32"):
            cases[f"blocks-{o}-{s}"] = {"optimizer": {**OPTIMIZERS[o], "group_overrides": BLOCKS},
                                        "parallelism": STRATEGIES[s], "model": "matrices_blocks"}
    local = {"type": "muon", "ns_dtype": "float32", "sharded_ns": "local"}
    cases["local-muon-fsdp-1step"] = {"optimizer": local, "parallelism": STRATEGIES["fsdp"], "model": "matrices",
                                      "stop": 1}
    cases["local-muon-ddp"] = {"optimizer": local, "parallelism": STRATEGIES["ddp"], "model": "matrices"}
    cases["local-blocks-normuon-fsdp"] = {
        "optimizer": {**OPTIMIZERS["normuon_f32"], "sharded_ns": "local", "group_overrides": BLOCKS},
        "parallelism": STRATEGIES["fsdp"], "model": "matrices_blocks",
    }
    for name, case in cases.items():
        case["parallelism"] = {**case["parallelism"], "timeout_s": 120}
        case["name"], case["report"] = name, report
    return cases


# ---------------------------------------------------------------- the worker's hooks (run on every rank)


def _count(case: dict[str, Any], model: Any, optimizer: Any, strategy: Any) -> None:
    """Count the matrices each step hands to Newton-Schulz on this rank (independent of ``split_stats``)."""
    inner = optimizer._orthogonalize
    optimizer._test_counts = []

    def counting(group: dict[str, Any], updates: list[torch.Tensor]) -> Any:
        optimizer._test_counts.append(len(updates))
        return inner(group, updates)

    optimizer._orthogonalize = counting


def _report(case: dict[str, Any], model: Any, optimizer: Any, strategy: Any) -> None:
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    stats = optimizer.split_stats
    out = {"counts": optimizer._test_counts, "computed": stats.computed, "total": stats.total,
           "owners": stats.owners, "received_bytes": stats.received_bytes, "gather_bytes": stats.gather_bytes}
    Path(case["report"], f"{case['name']}-rank{rank}.json").write_text(json.dumps(out))


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("dist_muon")
    cases = _cases(str(workdir))
    two = launch(cases, workdir, nproc=2, name="muon", worker=HERE)
    # one process: one run per distinct (optimizer, model, steps), shared by the strategies' cases
    single = {k: {**c, "parallelism": {"type": "single"}} for k, c in cases.items()}
    single["start-matrices"] = {**single["local-muon-fsdp-1step"], "stop": 0}
    keys = {k: json.dumps([c["optimizer"], c["model"], c.get("stop")], sort_keys=True) for k, c in single.items()}
    distinct = run_cases({key: single[k] for k, key in reversed(keys.items())})
    one = {k: distinct[key] for k, key in keys.items()}
    reports = {name: [json.loads(Path(workdir, f"{name}-rank{r}.json").read_text()) for r in (0, 1)]
               for name in cases}
    return {"two": two, "one": one, "reports": reports}


def _worst(got: dict[str, Any], want: dict[str, Any]) -> dict[str, float]:
    assert "error" not in want, want.get("traceback", want.get("error"))
    assert "error" not in got, got.get("traceback", got.get("error"))
    return {n: max_difference(got["params"][n], want["params"][n]) for n in want["params"]}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_ten_steps_on_two_ranks_equal_one_process(runs: dict[str, Any], optimizer: str, strategy: str) -> None:
    name = f"{optimizer}-{strategy}"
    worst = _worst(runs["two"][name], runs["one"][name])
    tolerance = ATOL_F32 if optimizer.endswith("f32") else ATOL_BF16
    assert max(worst.values()) <= tolerance, f"{name}: max |difference| per param {worst}"


@pytest.mark.parametrize("name", [f"blocks-{o}-{s}" for s in ("ddp", "fsdp", "hsdp_1x2")
                                  for o in ("muon_f32", "normuon_f32")])
def test_row_blocks_heads_and_3d_parameters_split_equal_one_process(runs: dict[str, Any], name: str) -> None:
    worst = _worst(runs["two"][name], runs["one"][name])
    assert max(worst.values()) <= ATOL_F32, f"{name}: max |difference| per param {worst}"


@pytest.mark.parametrize("name", [f"{o}-{s}" for s in STRATEGIES for o in ("muon", "normuon")]
                         + ["blocks-muon_f32-fsdp", "local-muon-ddp"])
def test_each_rank_orthogonalizes_a_disjoint_share(runs: dict[str, Any], name: str) -> None:
    """Every step, each rank hands Newton-Schulz only its own matrices: the two counts add up to all of them,
    both ranks work, and the owners each rank reports are the same plan."""
    ranks = runs["reports"][name]
    total = ranks[0]["total"]
    assert ranks[1]["total"] == total > 1
    assert ranks[0]["owners"] == ranks[1]["owners"], "the ranks disagree on who computes what"
    for r, report in enumerate(ranks):
        assert report["computed"] == report["owners"].count(r) > 0
    assert ranks[0]["computed"] + ranks[1]["computed"] == total
    # the hook's own count: matrices passed to Newton-Schulz per call, summed per step (10 steps, equal groups)
    per_rank = [sum(report["counts"]) for report in ranks]
    assert sum(per_rank) == total * 10, f"{name}: {per_rank} matrices orthogonalized for {total} x 10"
    assert max(per_rank) <= 0.75 * total * 10, f"{name}: one rank did most of the work: {per_rank}"


def test_fsdp_split_receives_less_than_gathering_every_matrix(runs: dict[str, Any]) -> None:
    """On 2 ranks the all-to-all moves each matrix's other half twice (float32 momentum in, bf16 result back):
    3/4 of the bytes of gathering every float32 matrix whole on every rank (the owners' uneven rows aside)."""
    ranks = runs["reports"]["muon-fsdp"]
    received, gathered = sum(r["received_bytes"] for r in ranks), sum(r["gather_bytes"] for r in ranks)
    assert 0.6 * gathered < received < 0.9 * gathered, (received, gathered)


def test_local_on_replicated_params_is_exact(runs: dict[str, Any]) -> None:
    worst = _worst(runs["two"]["local-muon-ddp"], runs["one"]["local-muon-ddp"])
    assert max(worst.values()) <= ATOL_F32, worst


def _update(after: dict[str, Any], before: dict[str, Any]) -> torch.Tensor:
    names = [n for n in before["params"] if n.endswith("weight")]
    return torch.cat([(torch.tensor(after["params"][n]) - torch.tensor(before["params"][n])).reshape(-1)
                      for n in names])


def test_local_is_the_documented_distance_from_exact(runs: dict[str, Any]) -> None:
    start = runs["one"]["start-matrices"]
    exact = _update(runs["one"]["local-muon-fsdp-1step"], start)
    local = _update(runs["two"]["local-muon-fsdp-1step"], start)
    distance = float((local - exact).norm() / exact.norm())
    assert abs(distance - LOCAL_DISTANCE) <= LOCAL_BAND * LOCAL_DISTANCE, f"measured {distance:.4f}"


def test_local_with_row_blocks_steps_and_stays_near_exact(runs: dict[str, Any]) -> None:
    worst = _worst(runs["two"]["local-blocks-normuon-fsdp"], runs["one"]["local-blocks-normuon-fsdp"])
    assert 0 < max(worst.values()) < 0.5, worst  # an approximation: not exact, not diverging


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2], before=_count, after=_report)
