"""The two forms of step coefficients: host floats (plain CPU steps) and 0-dim tensors (the rest).

A plain step on CPU passes its coefficients to the elementwise ops as Python floats; a
``step_factor`` step, and every step on a GPU, passes 0-dim tensors so nothing waits on the device.
CI has no GPU, so these tests also switch the CPU to the tensor form (the core's
``optreg.optim.accelerator_path()``): the conformance kit runs again on that path, and both paths
keep the step_factor contract (a factor of 1 equals the plain step bit for bit) in float32, float64
and bfloat16.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_kit import TEST_PLUGIN

import optreg
from optreg.optim import accelerator_path, host_scalars
from optreg.testing import OptimizerCase, OptimizerConformance, assert_state_equal, assert_step_factor_contract
from optreg.testing.parity import assert_histories_close, batches, small_model, train

SPECS = [
    {"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.01, "warmup_steps": 3},
    {"type": "schedule_free_adamw", "lr": 0.01, "foreach": True, "weight_decay_at_y": False, "weight_decay": 0.01},
    {"type": "schedule_free_sgd", "lr": 0.2, "weight_decay": 1e-3},
    {"type": "schedule_free_sgd", "lr": 0.2, "foreach": True, "maximize": True},
    {"type": "schedule_free_radam", "lr": 0.01},
    {"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False, "foreach": True},
    {"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.2}, "weight_decay_at_y": 1e-3},
    {"type": "schedule_free", "inner": {"type": "test_gated_sgd", "lr": 0.2}, "weight_decay_at_y": 1e-3},
]
IDS = [f"{s['type']}-{i}" for i, s in enumerate(SPECS)]
REGISTRY = optreg.Registry(plugins=[TEST_PLUGIN])


def _build(spec, model):
    return REGISTRY.optimizer_spec(spec).build(model)


def _run(spec, steps=12):
    model = small_model()
    optimizer = _build(spec, model)
    return train(model, optimizer, batches(steps), with_closure=True), optimizer


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_tensor_path_matches_the_float_path(spec):
    assert host_scalars(torch.device("cpu")), "the plain CPU path must take host floats"
    floats, _ = _run(spec)
    with accelerator_path():
        assert not host_scalars(torch.device("cpu"))
        tensors, _ = _run(spec)
    # The ops take their coefficients as floats on one side and 0-dim tensors on the other: the same
    # arithmetic by design, but lerp's two overloads and foreach's fused and unfused forms are distinct
    # kernels, so only a tolerance is promised across machines.
    assert_histories_close(tensors, floats, rtol=1e-5, atol=1e-6)


def _needs_gated_inner(spec):
    if spec.get("inner", {}).get("type") == "sgd":
        pytest.skip("torch's SGD inner optimizer does not take step_factor")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("path", ["host", "tensor"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_step_factor_contract_on_both_paths(spec, path, dtype):
    """A factor of 1 equals the plain step bit for bit (a plain CPU step takes the float form, a
    factor step the tensor form: they must run the same kernels on the same values), a factor of 0
    with NaN gradients changes nothing, in every dtype (bf16 lerp weights take the tensor form in both)."""
    _needs_gated_inner(spec)
    with accelerator_path() if path == "tensor" else contextlib.nullcontext():
        assert_step_factor_contract(lambda model: _build(spec, model.to(dtype)))


class TestTensorPathKit(OptimizerConformance):
    """The whole conformance kit (float64 purity, complex, maximize, no host sync, ...) on the tensor path."""

    distribution = "optreg-schedulefree"
    cases = [
        OptimizerCase(spec={"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.01, "warmup_steps": 5},
                      id="adamw"),
        OptimizerCase(spec={"type": "schedule_free_adamw", "lr": 0.01, "foreach": True, "weight_decay": 0.01,
                            "weight_decay_at_y": False}, id="adamw-foreach"),
        OptimizerCase(spec={"type": "schedule_free_sgd", "lr": 0.1, "weight_decay": 1e-3, "foreach": True},
                      descent={"rosenbrock": {"lr": 1e-3}}, id="sgd-foreach"),
        OptimizerCase(spec={"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False},
                      descent={"quadratic": {"lr": 0.1}, "rosenbrock": {"lr": 1e-3}}, id="radam-sgd-phase"),
        OptimizerCase(spec={"type": "schedule_free", "inner": {"type": "test_gated_sgd", "lr": 0.1},
                            "weight_decay_at_y": 1e-3},
                      descent={"rosenbrock": {"inner": {"type": "test_gated_sgd", "lr": 1e-3}}},
                      skip={"zero_grads": "weight_decay_at_y is the wrapper's own decay and moves the weights "
                                          "by design; test_kit.py runs the wrapper without it"},
                      id="wrapper-gated"),
    ]

    @pytest.fixture(autouse=True)
    def _tensor_path(self):
        with accelerator_path():
            yield

    def make_registry(self) -> optreg.Registry:
        return optreg.Registry(plugins=[TEST_PLUGIN])


@pytest.mark.parametrize("spec", SPECS[:6], ids=IDS[:6])
def test_complex_foreach_and_loop_agree(spec):
    """Complex params on the multi-tensor path equal the per-tensor path (the kit checks the loop)."""
    results = []
    for foreach in (False, True):
        g = torch.Generator().manual_seed(0)
        z = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.complex64, generator=g))
        optimizer = _build({**spec, "foreach": foreach}, [z])
        for _ in range(6):
            z.grad = torch.randn(z.shape, dtype=z.dtype, generator=g)
            optimizer.step()
        results.append((z.detach().clone(), optimizer.state_dict()["state"]))
    # per-tensor and multi-tensor are different code paths: a tolerance (the kit's parity default)
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    assert_state_equal(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts reads of a tensor value on the host (``float(t)``, ``bool(t)``, ``.item()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_core_switch_chooses_the_path_of_a_plain_step(spec):
    """A plain CPU step reads its coefficients once per group as floats; under the core's
    ``accelerator_path()`` the same step reads nothing on the host (the path an accelerator takes)."""
    if spec.get("inner", {}).get("type") == "sgd":
        pytest.skip("torch's SGD reads its LR and step on the host itself")
    model = small_model()
    optimizer = _build(spec, model)
    train(model, optimizer, batches(2))
    counts = []
    for path in (contextlib.nullcontext(), accelerator_path()):
        model.zero_grad()
        x, y = batches(1)[0]
        torch.nn.functional.mse_loss(model(x), y).backward()
        with path, _HostReads() as reads:
            optimizer.step()
        counts.append(reads.count)
    assert counts[0] > 0 and counts[1] == 0, counts
