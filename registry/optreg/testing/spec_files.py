"""Check a spec file end to end: it loads, round-trips through TOML, builds and trains.

Used by the repo's check of every file in ``specs/`` and by each plugin's check of the specs it
ships::

    from optreg.testing.spec_files import train_spec_file

    losses = train_spec_file(path, steps=8)
    assert losses[-1] < losses[0]
"""

from __future__ import annotations

from pathlib import Path

import torch

import optreg
from optreg.models import TinyTransformer

__all__ = ["train_spec_file"]


def train_spec_file(path: Path, steps: int, *, t_max: int | None = None) -> list[float]:
    """Load ``path``, check the TOML round trip, build it on a tiny transformer and take ``steps``
    steps (with a closure, and the scheduler in its units) on one fixed batch; return the losses.

    Asserts the round trip and that every parameter is finite at the end. ``t_max`` (default
    ``steps``) is the run length the scheduler spans.
    """
    spec = optreg.load_spec(path)
    assert optreg.parse_spec(optreg.dump_spec(spec)) == spec, f"{path}: the spec does not round-trip through TOML"
    torch.manual_seed(0)
    built = spec.build(TinyTransformer(), t_max=steps if t_max is None else t_max)
    data = torch.randint(0, 96, (4, 17), generator=torch.Generator().manual_seed(0))
    targets = data[:, 1:].reshape(-1)
    losses = []
    for _ in range(steps):

        def closure() -> torch.Tensor:
            built.optimizer.zero_grad(set_to_none=True)
            logits = built.model(data[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
            loss.backward()
            return loss

        losses.append(float(built.optimizer.step(closure).detach()))
        if spec.scheduler.units == "tokens":
            built.scheduler.step(tokens=targets.numel())
        else:
            built.scheduler.step()
    assert all(torch.isfinite(p).all() for p in built.model.parameters()), f"{path}: non-finite parameters"
    return losses
