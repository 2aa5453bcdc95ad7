"""Muon step time vs torch.optim.Muon, and Newton-Schulz GFLOP/s vs measured matmul peak.

Run: ``.venv/bin/python bench/muon_step.py`` (``--help`` for options). Prints, in one run:

1. ``torch.mm`` peak GFLOP/s for fp32 and bf16 (best of the three operand layouts torch
   dispatches differently, on a 1024 x 4096 x 1024 product);
2. Newton-Schulz (5 steps, 1024 x 4096) GFLOP/s of optreg-muon's kernel, nominal FLOPs
   (full products), as a fraction of those peaks;
3. the step time of ``muon`` configurations on a model of 1024 x 1024 and 1024 x 4096
   matrices as a ratio to ``torch.optim.Muon`` (same matrices, same gradients, same
   quintic coefficients) and to our default.

On CPUs without native bf16 GEMMs (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is
False: AVX2-only machines) torch's bf16 products are 10-100x slower than fp32 ones, so
``torch.optim.Muon`` (bf16 hard-coded) takes tens of seconds per matrix. There, unless
``--full-baseline`` is given, its step time is measured on one matrix of each shape and
multiplied by the count (torch.optim.Muon loops over parameters, so its step time is
the sum of per-matrix times); the output says so.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from optreg_muon import Muon
from optreg_muon.functional.newton_schulz import (
    native_bf16_gemm,
    newton_schulz,
    newton_schulz_flops,
    resolve_coefficients,
)

CONFIGS = {
    "muon (default: quintic x5, frobenius)": {},
    "muon aol x4 (quintic)": {"preconditioning": "aol", "ns_steps": 4},
    "muon turbo_aol x4 (aol)": {"preconditioning": "aol", "ns_steps": 4, "ns_coefficients": "turbo_aol"},
    "muon fp32 NS (quintic x5)": {"ns_dtype": "float32"},
}


def _time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mm_peak(dtype: torch.dtype, repeats: int) -> tuple[float, str]:
    m, k, n = 1024, 4096, 1024
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    a_t = a.T.contiguous().T  # column-major views of the same values
    b_t = b.T.contiguous().T
    layouts = {"a@b": (a, b), "a@b (b col-major)": (a, b_t), "a@b (a col-major)": (a_t, b)}
    best, best_name = 0.0, ""
    for name, (x, y) in layouts.items():
        seconds = _time(lambda x=x, y=y: x @ y, repeats)
        rate = 2 * m * k * n / seconds / 1e9
        if rate > best:
            best, best_name = rate, name
    return best, best_name


def ns_rate(dtype: torch.dtype, repeats: int, steps: int = 5) -> float:
    g = torch.randn(1024, 4096)
    coefficients = resolve_coefficients("muon", steps)
    seconds = _time(lambda: newton_schulz(g, coefficients, dtype=dtype), repeats)
    return newton_schulz_flops(1024, 4096, steps) / seconds / 1e9


def make_params(shapes: list[tuple[int, int]], seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g) * 0.02) for s in shapes]


def step_time(make_optimizer, shapes: list[tuple[int, int]], repeats: int, warmup: int = 1) -> float:
    params = make_params(shapes)
    optimizer = make_optimizer(params)
    g = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 0.01
    return _time(optimizer.step, repeats, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--square", type=int, default=2, help="number of 1024x1024 matrices")
    parser.add_argument("--wide", type=int, default=1, help="number of 1024x4096 matrices")
    parser.add_argument("--tall", type=int, default=1, help="number of 4096x1024 matrices")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per configuration (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--full-baseline", action="store_true", help="time torch.optim.Muon on every matrix")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    native = native_bf16_gemm(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16 GEMM: {native}")

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peaks[name], layout = mm_peak(dtype, args.repeats)
        print(f"torch.mm peak {name}: {peaks[name]:8.1f} GFLOP/s ({layout})")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rate = ns_rate(dtype, max(1, args.repeats - 1))
        extra = "" if name == "fp32" or native else f", {rate / peaks['fp32']:.0%} of fp32 peak (fp32 GEMMs)"
        share = rate / peaks[name]
        print(f"Newton-Schulz {name} 1024x4096 x5: {rate:8.1f} GFLOP/s = {share:.0%} of {name} peak{extra}")

    shapes = [(1024, 1024)] * args.square + [(1024, 4096)] * args.wide + [(4096, 1024)] * args.tall
    params_m = sum(r * c for r, c in shapes) / 1e6
    print(f"\nmodel: {dict(Counter(shapes))} ({params_m:.1f}M params), median of {args.repeats} steps")

    def torch_muon(ps):
        return torch.optim.Muon(ps, lr=0.02, weight_decay=0.0)

    if native or args.full_baseline:
        baseline = step_time(torch_muon, shapes, args.repeats)
        how = "measured"
    else:
        baseline = sum(
            count * step_time(torch_muon, [shape], 1, warmup=0) for shape, count in Counter(shapes).items()
        )
        how = "one matrix per shape, one step (no warmup), times count (bf16 GEMMs not native here)"
    print(f"{'torch.optim.Muon':42s} {baseline * 1e3:10.1f} ms   ratio 1.00   ({how})")
    default = None
    for name, options in CONFIGS.items():
        seconds = step_time(lambda ps, o=options: Muon(ps, lr=0.02, **o), shapes, args.repeats)
        default = default or seconds
        print(f"{name:42s} {seconds * 1e3:10.1f} ms   ratio {seconds / baseline:5.3f}   "
              f"vs our default {seconds / default:5.3f}")


if __name__ == "__main__":
    main()
