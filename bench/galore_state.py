"""Optimizer state of GaLore against AdamW on the same model: bytes after one step, printed as a ratio.

The model is an MLP of hidden matrices (``--widths``, default 256-512-512-256, as docs/contrib.md); each
optimizer steps once on the same gradients and the bytes of every state tensor are summed (GaLore's
projection matrices and its inner AdamW's moments of the projected gradients included), beside what
GaLore's declared state layout gives from the shapes before anything is allocated. Nothing is timed;
the ratio is what GaLore saves.

    python bench/galore_state.py
    python bench/galore_state.py --widths 1024,4096,1024 --ranks 32,128
"""

from __future__ import annotations

import argparse
import itertools

import torch
from torch import nn

import optreg
from optreg.memory import estimate_state, measured_state_bytes


def measure(spec: dict, widths: list[int]) -> tuple[int, int]:
    """(declared, held): the state the spec's declared layout gives for the model, from shapes before anything
    is allocated, and the bytes of state tensors the optimizer holds after one step (optreg.memory)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(a, b) for a, b in itertools.pairwise(widths)])
    spec_object = optreg.get_registry().optimizer_spec(spec)
    declared = estimate_state(spec_object, model).total_bytes
    optimizer = spec_object.build(model)
    model(torch.randn(8, widths[0])).square().mean().backward()
    optimizer.step()
    return declared, measured_state_bytes(optimizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,512,512,256", help="layer widths, comma-separated")
    parser.add_argument("--ranks", default="64,16", help="GaLore ranks, comma-separated")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    _, adamw = measure({"type": "adamw"}, widths)
    print(f"MLP {'-'.join(map(str, widths))}: {params:,} parameters")
    print(f"{'optimizer':<22} {'state bytes':>14} {'declared':>14} {'vs adamw':>9}")
    print(f"{'adamw':<22} {adamw:>14,} {adamw:>14,} {1:>9.3f}")
    for rank in (int(r) for r in args.ranks.split(",")):
        declared, galore = measure({"type": "galore", "rank": rank}, widths)
        print(f"{f'galore rank={rank}':<22} {galore:>14,} {declared:>14,} {galore / adamw:>9.3f}")


if __name__ == "__main__":
    main()
