"""Fuzz every registered spec with many more examples than the test suite (``optreg.testing.fuzz``).

For each registered optimizer, schedule and parallelism name: generated tables (valid, edge and wrong
values from the spec class's own fields, unknown keys, wrong tables) and mutated TOML texts, checking that
parsing raises only SpecError (none hiding a crash), that a spec that parses builds and steps or raises
SpecError, and that dump/parse round-trips. Prints, per name, how many inputs were rejected, parsed (held a
huge integer: not built) and built, and every failure with the smallest input hypothesis found.

    python bench/fuzz_specs.py                          # 200 examples per name, random seed
    python bench/fuzz_specs.py --examples 2000 --seed 1 --only skip_step_lion,ademamix
    python bench/fuzz_specs.py --kinds scheduler --deep 3000   # also nest values 3000 arrays deep

Exit status 1 when any name failed. Not a timed benchmark: the time per name is printed for orientation.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import optreg
from optreg.testing.fuzz import fuzz_spec

#: Names that cannot step on the fuzzer's dense-gradient MLP (built, not stepped).
NO_STEP = {"sparse_adam"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="examples per name, for tables and for texts")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one, printed)")
    parser.add_argument("--kinds", default="optimizer,scheduler,parallelism", help="comma list of kinds")
    parser.add_argument("--only", default="", help="comma list of names (default: every registered name)")
    parser.add_argument("--deep", type=int, default=8, help="deepest array nesting a text mutation writes")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    only = {n for n in args.only.split(",") if n}
    registry = optreg.Registry()
    print(f"seed {seed}, {args.examples} examples per name (tables and texts), nesting up to {args.deep}")
    failed = []
    for kind in args.kinds.split(","):
        for name in registry.names(kind):
            if only and name not in only:
                continue
            start = time.perf_counter()
            try:
                counts = fuzz_spec(registry, kind, name, examples=args.examples, seed=seed,
                                   step=name not in NO_STEP, max_nesting=args.deep, search_text_base=True)
            except Exception as exc:  # noqa: BLE001 - a FuzzFailure, or hypothesis' group of distinct ones
                failed.append((kind, name))
                problems = getattr(exc, "exceptions", [exc])
                print(f"FAIL  {kind:<11} {name:<34} {len(problems)} distinct failure(s)")
                for problem in problems:
                    print("      " + str(problem).replace("\n", "\n      ")[:2000])
                continue
            seconds = time.perf_counter() - start
            summary = ", ".join(f"{v} {k}" for k, v in counts.items())
            print(f"ok    {kind:<11} {name:<34} {summary} ({seconds:.1f} s)", flush=True)
    if failed:
        print(f"{len(failed)} failed: {', '.join(n for _, n in failed)} (rerun with --seed {seed})")
        return 1
    print("every name passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
