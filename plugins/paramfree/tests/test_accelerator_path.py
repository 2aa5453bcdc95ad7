"""One code path on every device: coefficients are 0-dim tensors, nothing is read on the host.

There used to be a CPU path that read step coefficients into Python floats: a ``step_factor`` step
must not read the host (a sync on an accelerator), and a ``step_factor = 1`` step must equal the
plain step bit for bit on every machine, so both must run the same ops; the tensor ops are single
passes (``addcmul_`` with a 0-dim tensor costs what ``add_(alpha=)`` does). These tests check the
path on CPU beyond what the kit covers: plain steps read nothing either, and the branches the
kit's default groups do not reach (an ``lr`` held as a tensor, a group at ``lr = 0``) stay float64-pure
and agree with the plain-number ``lr``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import optreg
from optreg.testing.parity import assert_histories_close, batches, small_model

SPECS = [
    {"type": "prodigy", "weight_decay": 0.01, "betas": [0.9, 0.99]},
    {"type": "prodigy", "betas": [0.0, 0.99], "decouple": False, "weight_decay": 1e-3},
    {"type": "dadapt_adamw", "weight_decay": 0.01},
    {"type": "dadapt_adamw", "weight_decay": 0.01, "decouple": False},
    {"type": "dadapt_sgd", "momentum": 0.9, "d0": 1e-3},
    {"type": "dadapt_lion", "weight_decay": 0.01},
    {"type": "dog", "weight_decay": 1e-3},
    {"type": "dowg"},
    {"type": "cocob"},
    {"type": "mechanic", "inner": {"type": "dog", "init_step": "learning_rate", "init_step_value": 0.05}},
    {"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1, "maximize": True}},
    {"type": "momo", "weight_decay": 1e-3},
    {"type": "momo_adam", "weight_decay": 1e-3, "weight_decay_mode": "decoupled"},
]
IDS = [f"{s['type']}-{i}" for i, s in enumerate(SPECS)]

_HOST_READS = frozenset({"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "equal"})
_LOW = (torch.float32, torch.bfloat16, torch.float16)


class _HostReads(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if getattr(func, "__name__", "") in _HOST_READS:
            self.found.append(func.__name__)
        return func(*args, **(kwargs or {}))


class _LowPrecisionOps(TorchDispatchMode):
    """Ops whose result is float32 / bf16 / fp16 and not integer-valued (counters and 0/1 gates are)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        results = list(out) if isinstance(out, (list, tuple)) else [out]
        if func._schema.name.endswith("_") and args:
            results.append(args[0])
        for t in results:
            if isinstance(t, torch.Tensor) and t.dtype in _LOW and t.numel():
                d = t.detach().double()
                if not bool(((d == d.round()) & (d.abs() <= 2.0**24)).all()):
                    self.found.append(str(func))
        return out


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, count: int, mode: Any = None) -> None:
    for x, y in batches(count):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if mode is None:
            optimizer.step(lambda loss=loss: loss.detach())
        else:
            with mode:
                optimizer.step(lambda loss=loss: loss.detach())


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_plain_step_reads_nothing_on_the_host(spec):
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    recorder = _HostReads()
    _steps(model, optimizer, 4, recorder)
    assert not recorder.found, f"a plain step read tensor values on the host: {sorted(set(recorder.found))}"


def _groups(model: nn.Module, lr: Any) -> list[dict[str, Any]]:
    """The first layer at ``lr``, the last one frozen at 0 (as a frozen tower or a schedule at 0)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first, last = list(layers[0].parameters()), list(layers[-1].parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in first + last)]
    groups = [{"params": first, "lr": lr}, {"params": last, "lr": 0.0}]
    return groups + ([{"params": rest, "lr": lr}] if rest else [])


def _lr_of(spec: dict[str, Any]) -> float:
    return spec.get("inner", spec).get("lr", 1.0 if spec["type"] not in ("momo_adam",) else 1e-2)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.get("inner", {}).get("type") != "sgd"],
                         ids=[i for s, i in zip(SPECS, IDS) if s.get("inner", {}).get("type") != "sgd"])
def test_tensor_lr_and_frozen_group_stay_float64(spec):
    """A float64 run with a tensor ``lr`` and an ``lr = 0`` group rounds nothing to float32."""
    model = small_model().double()
    lr = torch.tensor(_lr_of(spec), dtype=torch.float64)
    optimizer = optreg.build_optimizer(spec, _groups(model, lr))
    for x, y in batches(3):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x.double()), y.double())
        loss.backward()
        recorder = _LowPrecisionOps()
        with recorder:
            optimizer.step(lambda loss=loss: loss.detach())
        assert not recorder.found, f"rounded to a lower precision: {sorted(set(recorder.found))[:6]}"


@pytest.mark.parametrize("spec", [s for s in SPECS if s.get("inner", {}).get("type") != "sgd"],
                         ids=[i for s, i in zip(SPECS, IDS) if s.get("inner", {}).get("type") != "sgd"])
def test_tensor_lr_matches_a_number_lr(spec):
    """A tensor ``lr`` (a compiled schedule's) takes the gated-square branch; it agrees with a number ``lr``.

    Not bit for bit: ``x * (c * x)`` and ``c * x * x`` round differently in float32.
    """
    histories = []
    for lr in (_lr_of(spec), torch.tensor(_lr_of(spec), dtype=torch.float64)):
        model = small_model()
        optimizer = optreg.build_optimizer(spec, _groups(model, lr))
        history = []
        for x, y in batches(10):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step(lambda loss=loss: loss.detach())
            history.append([p.detach().clone() for p in model.parameters()])
        histories.append(history)
    assert_histories_close(histories[1], histories[0], rtol=1e-5, atol=1e-6)
    frozen = [m for m in small_model().modules() if isinstance(m, nn.Linear)][-1]
    moved_frozen = any(not torch.equal(a, b) for a, b in zip(histories[0][-1][-2:], frozen.parameters()))
    assert not moved_frozen, "the lr = 0 group moved"
