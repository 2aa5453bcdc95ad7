"""Optimizer state of GaLore against AdamW on the same model: bytes after one step, printed as a ratio.

The model is an MLP of hidden matrices (``--widths``, default 256-512-512-256, as docs/contrib.md); each
optimizer steps once on the same gradients and the bytes of every state tensor are summed (GaLore's
projection matrices and its inner AdamW's moments of the projected gradients included). Nothing is
timed; the ratio is what GaLore saves.

    python bench/galore_state.py
    python bench/galore_state.py --widths 1024,4096,1024 --ranks 32,128
"""

from __future__ import annotations

import argparse
import itertools

import torch
from torch import nn

import optreg


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (through wrappers: ``state_dict`` holds them all)."""
    total = 0
    for entry in optimizer.state_dict()["state"].values():
        for value in entry.values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total


def measure(spec: dict, widths: list[int]) -> int:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(a, b) for a, b in itertools.pairwise(widths)])
    optimizer = optreg.build_optimizer(spec, model)
    model(torch.randn(8, widths[0])).square().mean().backward()
    optimizer.step()
    return state_bytes(optimizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,512,512,256", help="layer widths, comma-separated")
    parser.add_argument("--ranks", default="64,16", help="GaLore ranks, comma-separated")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    adamw = measure({"type": "adamw"}, widths)
    print(f"MLP {'-'.join(map(str, widths))}: {params:,} parameters")
    print(f"{'optimizer':<22} {'state bytes':>14} {'vs adamw':>9}")
    print(f"{'adamw':<22} {adamw:>14,} {1:>9.3f}")
    for rank in (int(r) for r in args.ranks.split(",")):
        galore = measure({"type": "galore", "rank": rank}, widths)
        print(f"{f'galore rank={rank}':<22} {galore:>14,} {galore / adamw:>9.3f}")


if __name__ == "__main__":
    main()
