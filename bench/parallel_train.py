"""Training throughput of ``optreg train`` on 1 and 2 processes (ddp and fsdp), as ratios to one process.

Every run trains the same char_lm model with AdamW for ``--steps`` steps; each rank reads ``--batch-size``
sequences per step (so 2 data-parallel ranks train on twice the tokens per step: the usual
data-parallel scaling). Throughput is the run's own tokens/s (training steps only, the global batch's
tokens), read from its summary.json. The baseline is ``parallelism = "single"`` in one process with
one thread, in the same invocation; ``x single`` is each run's tokens/s over it, so 2 ranks on 2 idle
cores approach 2.0 when communication is cheap. Each configuration runs ``--repeats`` times; min,
median and max are printed. No assertion: machines are noisy.

    python bench/parallel_train.py
    python bench/parallel_train.py --steps 100 --repeats 3 --d-model 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optreg

ROOT = Path(__file__).resolve().parents[1]

#: name -> (the spec's [parallelism] table, processes, threads per process)
CONFIGS: dict[str, tuple[dict[str, object], int, int]] = {
    "single, 1 thread": ({"type": "single"}, 1, 1),
    "single, 2 threads": ({"type": "single"}, 1, 2),
    "ddp, 1 process": ({"type": "ddp"}, 1, 1),
    "ddp, 2 processes": ({"type": "ddp"}, 2, 1),
    "fsdp, 1 process": ({"type": "fsdp"}, 1, 1),
    "fsdp, 2 processes": ({"type": "fsdp"}, 2, 1),
}


def write_spec(directory: Path, name: str, parallelism: dict[str, object], args: argparse.Namespace) -> Path:
    data = optreg.convert.spec_to_dict(optreg.load_spec(ROOT / "specs" / "adamw_fsdp.toml"))
    data["parallelism"] = parallelism
    data["train"].update(
        steps=args.steps, batch_size=args.batch_size, d_model=args.d_model, n_layers=args.layers,
        eval_interval=args.steps, eval_batches=1, device="cpu",
    )
    path = directory / f"{name.replace(', ', '_').replace(' ', '_')}.toml"
    path.write_text(optreg.dump_spec(optreg.parse_spec(data)))
    return path


def tokens_per_second(spec: Path, nproc: int, threads: int, out: Path) -> float:
    command = [sys.executable, "-m", "optreg", "train", str(spec), "--out", str(out), "--overwrite",
               "--no-plots", "--no-progress", "--threads", str(threads)]
    if nproc > 1 or optreg.load_spec(spec).parallelism.TYPE != "single":
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, capture_output=True, env=env)
    return float(json.loads((out / "summary.json").read_text())["tokens_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per rank per step")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, (parallelism, nproc, threads) in CONFIGS.items():
            spec = write_spec(directory, name, parallelism, args)
            rows[name] = [tokens_per_second(spec, nproc, threads, directory / "run") for _ in range(args.repeats)]
            print(f"  {name}: {', '.join(f'{v:,.0f}' for v in rows[name])} tok/s", file=sys.stderr)
    base = statistics.median(rows["single, 1 thread"])
    print(f"optreg train, char_lm d_model {args.d_model} x {args.layers} layers, AdamW, {args.steps} steps, "
          f"{args.batch_size} sequences per rank per step")
    print(f"{'configuration':20s} {'min tok/s':>10s} {'median':>10s} {'max':>10s} {'x single':>9s}")
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"{name:20s} {min(values):10,.0f} {median:10,.0f} {max(values):10,.0f} {median / base:9.2f}")


if __name__ == "__main__":
    main()
