"""Small deterministic problems the conformance kit optimizes.

Each problem is an ``nn.Module`` with a ``loss(step)`` method: the same step
index always gives the same batch, so an interrupted-and-resumed run sees the
same data as an unbroken one.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PROBLEMS", "Quadratic", "Rosenbrock", "TinyRegression", "make_problem"]


class Quadratic(nn.Module):
    """An ill-conditioned convex quadratic over a matrix and a vector."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(8, 4, generator=g))
        self.bias = nn.Parameter(torch.randn(4, generator=g))
        self.register_buffer("scale_w", torch.logspace(-1, 1, 32).reshape(8, 4))
        self.register_buffer("scale_b", torch.logspace(-1, 1, 4))
        self.register_buffer("target_w", torch.randn(8, 4, generator=g) * 0.1)

    def loss(self, step: int) -> torch.Tensor:
        w = (self.weight.float() - self.target_w) ** 2 * self.scale_w
        return 0.5 * (w.sum() + (self.bias.float() ** 2 * self.scale_b).sum())


class Rosenbrock(nn.Module):
    """A batch of 2-D Rosenbrock valleys started at the classic (-1.2, 1)."""

    def __init__(self) -> None:
        super().__init__()
        start = torch.tensor([[-1.2, 1.0]]).repeat(4, 1) + 0.05 * torch.arange(4.0).unsqueeze(1)
        self.weight = nn.Parameter(start)

    def loss(self, step: int) -> torch.Tensor:
        x, y = self.weight.float().unbind(1)
        return ((1 - x) ** 2 + 100 * (y - x**2) ** 2).mean()


class TinyRegression(nn.Module):
    """A small MLP fitting a fixed random teacher; minibatches depend only on the step."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.fc1 = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 16)
        self.head = nn.Linear(16, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.1))
            self.norm.weight.fill_(1.0)
        self.register_buffer("teacher", torch.randn(8, 2, generator=g))
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.norm(self.fc1(x)))
        return self.head(torch.tanh(self.fc2(x)))

    def loss(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1000 + step % 4)
        x = torch.randn(32, 8, generator=g)
        y = torch.sin(x @ self.teacher.float())
        dtype = next(self.parameters()).dtype
        # float32 for float32 and bf16 params; float64 params get a float64 loss (the kit's float64 check)
        loss_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        return nn.functional.mse_loss(self(x.to(dtype)).to(loss_dtype), y.to(loss_dtype))


PROBLEMS = {"quadratic": Quadratic, "rosenbrock": Rosenbrock, "mlp": TinyRegression}


def make_problem(name: str, seed: int = 0) -> nn.Module:
    """A fresh problem; ``seed`` fixes any remaining randomness (module init)."""
    torch.manual_seed(seed)
    return PROBLEMS[name]()
