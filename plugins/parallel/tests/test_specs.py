"""The strategies' specs: discovery, strict validation in one process, round trip, and the launch error."""

from __future__ import annotations

import pytest
import torch

import optreg
from optreg.convert import spec_to_dict

DISTRIBUTION = "optreg-parallel"
VALID = [
    {"type": "ddp", "bucket_cap_mb": 10.0, "static_graph": True},
    {"type": "fsdp", "shard_modules": ["blocks.*"], "reshard_after_forward": False, "param_dtype": "bfloat16"},
    {"type": "hsdp", "shard": 2},
    {"type": "hsdp", "replicate": 2, "shard": 1},
    {"type": "tp", "plan": {"*.mlp_in": "colwise", "*.mlp_out": "rowwise"}},
    {"type": "fsdp_tp", "tp": 2, "plan": {"*.mlp_in": "colwise", "*.mlp_out": "rowwise"}},
]


@pytest.mark.parametrize("table", VALID, ids=lambda t: t["type"])
def test_each_strategy_is_registered_validates_in_one_process_and_round_trips(table):
    registry = optreg.get_registry()
    assert registry.provider("parallelism", table["type"]).distribution == DISTRIBUTION
    spec = registry.parse_spec({"optimizer": {"type": "sgd"}, "parallelism": table})
    assert registry.parse_spec(optreg.dump_spec(spec)) == spec
    assert spec_to_dict(spec.parallelism)["type"] == table["type"]


@pytest.mark.parametrize(
    ("table", "path", "match"),
    [
        ({"type": "ddp", "bucket_cap_mb": 0.0}, "$.parallelism.bucket_cap_mb", r"must be in (0, 10000]"),
        ({"type": "fsdp", "param_dtype": "float8"}, "$.parallelism.param_dtype", "expected one of"),
        ({"type": "hsdp"}, "$.parallelism.shard", "give `shard` or `replicate`"),
        ({"type": "tp"}, "$.parallelism.plan", "at least one glob"),
        ({"type": "tp", "plan": {"mlp_in": "diagonal"}}, "$.parallelism.plan.mlp_in", "expected one of"),
        ({"type": "fsdp_tp", "tp": 0, "plan": {"x": "colwise"}}, "$.parallelism.tp", "must be in [1, 65536]"),
        ({"type": "fsdp", "backend": "mpi"}, "$.parallelism.backend", "expected one of"),
    ],
)
def test_bad_strategy_options_are_spec_errors_at_their_path(table, path, match):
    with pytest.raises(optreg.SpecError) as info:
        optreg.parse_spec({"optimizer": {"type": "sgd"}, "parallelism": table})
    assert path in {p for p, _ in info.value.errors}, info.value
    assert match in dict(info.value.errors)[path]


@pytest.mark.parametrize("table", VALID, ids=lambda t: t["type"])
def test_building_outside_a_launch_says_how_to_launch(table, monkeypatch):
    for variable in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(variable, raising=False)
    spec = optreg.parse_spec({"optimizer": {"type": "sgd"}, "parallelism": table})
    with pytest.raises(optreg.SpecError) as info:
        spec.build(torch.nn.Linear(2, 2))
    assert info.value.path == "$.parallelism.type"
    assert "--nproc" in info.value.message and "torchrun" in info.value.message


def test_the_strategies_show_their_fields():
    from optreg.cli import main

    assert main(["show", "fsdp", "--json"]) == 0
