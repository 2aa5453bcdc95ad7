"""Adafactor, L-BFGS and Rprop refuse sharded (DTensor) parameters when built, naming the strategy; the others
build on them. (plugins/parallel's equivalence runs show the rest on 2 processes: every other name equals one
process under ddp, fsdp, hsdp, tp and fsdp_tp.)"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

import optreg


@pytest.fixture(scope="module")
def sharded_params():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    weight = nn.Parameter(distribute_tensor(torch.randn(4, 3), mesh, [Shard(0)]))
    yield [weight]
    if started:
        dist.destroy_process_group()


class _Strategy:
    def describe(self) -> str:
        return "fsdp on 1 rank"


@pytest.mark.parametrize("name", ["adafactor", "lbfgs", "rprop"])
def test_refused_on_sharded_params(sharded_params, name: str) -> None:
    spec = optreg.get_registry().optimizer_spec({"type": name})
    with pytest.raises(optreg.SpecError, match=r"cannot step the sharded .* fsdp on 1 rank.*use ddp") as info:
        spec.create([{"params": sharded_params}], optreg.BuildContext(strategy=_Strategy()))
    assert info.value.path == "$.type"


@pytest.mark.parametrize("name", ["adadelta", "adagrad", "rmsprop"])
def test_elementwise_ones_build_and_step_on_sharded_params(sharded_params, name: str) -> None:
    optimizer = optreg.build_optimizer({"type": name}, sharded_params)
    before = sharded_params[0].detach().full_tensor().clone()
    sharded_params[0].grad = sharded_params[0].detach() * 0 + 1
    optimizer.step()
    sharded_params[0].grad = None
    assert not torch.equal(sharded_params[0].detach().full_tensor(), before)
