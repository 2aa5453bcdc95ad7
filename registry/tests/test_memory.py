"""optreg.memory: the optimizer state a spec allocates, from shapes, before anything is allocated."""

from __future__ import annotations

import pytest
import torch
from support import make_registry
from torch import nn

from optreg.memory import (
    ParamShape,
    StateTensor,
    estimate_state,
    format_bytes,
    measured_state_bytes,
    scalar,
)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))


def test_state_tensors_count_their_bytes() -> None:
    assert StateTensor("m", (3, 4), "bfloat16").nbytes == 24
    assert StateTensor("history", (10,), torch.float64, grows=True, count=5).nbytes == 400
    assert scalar("step").nbytes == 4 and scalar("k", "float64").nbytes == 8
    p = ParamShape("w", (8, 4), torch.float32, (4, 4))
    assert p.like("m").shape == (4, 4) and p.like("m", "bfloat16").nbytes == 32 and p.numel == 16
    assert ParamShape("b", (4,), "float32").local_shape == (4,)
    with pytest.raises(ValueError, match="not a torch dtype"):
        StateTensor("x", (), "float33")


def test_the_estimate_of_adam_is_what_adam_holds_after_a_step_by_group_and_dtype() -> None:
    registry = make_registry()
    spec = registry.optimizer_spec({"type": "torch_adam", "weight_decay": 0.1, "amsgrad": True})
    net = model()
    estimate = estimate_state(spec, net)
    params = list(net.parameters())
    assert estimate.complete and estimate.world_size == 1 and not estimate.sharded
    assert estimate.total_bytes == estimate.first_step_bytes == sum(3 * p.numel() * 4 + 4 for p in params)
    decayed = net[0].weight.numel() + net[2].weight.numel()
    default = 3 * 4 * decayed + 8  # the two weight matrices: three moments each, two float32 steps
    assert estimate.by_group() == {"default": default, "no_decay": estimate.total_bytes - default}
    assert estimate.by_dtype() == {"float32": estimate.total_bytes}
    assert estimate.by_optimizer() == {"torch_adam": estimate.total_bytes}
    optimizer = spec.build(net)
    net(torch.randn(2, 6)).sum().backward()
    optimizer.step()
    assert measured_state_bytes(optimizer) == estimate.total_bytes
    assert estimate.to_dict()["total_bytes"] == estimate.total_bytes
    assert estimate.lines()[0] == f"optimizer state: {format_bytes(estimate.total_bytes)}"


def test_a_wrapper_adds_its_inner_optimizers_state_and_an_undeclared_layout_is_named() -> None:
    registry = make_registry()
    net = model()
    inner = estimate_state(registry.optimizer_spec({"type": "torch_adam"}), net)
    wrapped = estimate_state(registry.optimizer_spec({"type": "wrapper", "inner": {"type": "torch_adam"}}), net)
    assert wrapped.total_bytes == inner.total_bytes and wrapped.complete
    undeclared = estimate_state(registry.optimizer_spec({"type": "kinds"}), net)
    assert not undeclared.complete and undeclared.undeclared == ("kinds",) and undeclared.total_bytes == 0
    assert any("kinds: declares no state layout" in line for line in undeclared.lines())


def test_a_simulated_shard_counts_rank_zeros_chunk() -> None:
    spec = make_registry().optimizer_spec({"type": "torch_adam"})
    net = model()
    estimate = estimate_state(spec, net, shard=lambda fqn, shape: (-(-shape[0] // 2), *shape[1:]), world_size=2)
    assert estimate.sharded and "per rank (sharded over 2 ranks)" in estimate.lines()[0]
    chunks = sum(-(-p.shape[0] // 2) * (p.numel() // p.shape[0]) for p in net.parameters())
    assert estimate.total_bytes == 2 * 4 * chunks + 4 * len(list(net.parameters()))


def test_format_bytes() -> None:
    assert format_bytes(0) == "0 B" and format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**30) == "3.0 GiB"
    assert format_bytes(None) == "-" and format_bytes(float("nan")) == "-"
