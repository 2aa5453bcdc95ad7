"""Step time of whole optimizer families against torch's fused AdamW, through ``optreg bench``.

    python bench/family_step.py FAMILY [FAMILY ...] [--params LAYOUT | --size M] [--steps N] [--no-compile]
                                [--threads N] [--json | --markdown] [--variants] [--repeat N] [--cold]
                                [--profile NAME]

FAMILY is a plugin distribution that registers optimizers (``optreg-adam``, ``optreg-sign``,
``optreg-schedulefree``, ``optreg-paramfree``, ``optreg-skipstep``, or any other installed one), its short form
(``adam``, ``sign``, ``schedulefree``, ``paramfree``, ``skipstep``), or ``all`` (those five; Muon's baseline is
torch.optim.Muon: bench/muon_step.py). Every optimizer name the family registers (aliases left out: one row per
optimizer) is timed in one run by ``optreg_train.bench.bench``, the code of ``optreg bench``: eager and compiled
paths where the spec has a ``compile`` option, each step alternated with a fused AdamW step, time per byte
touched with the bytes from the spec's declared state layout, first-step time, peak memory (``optreg bench
--help`` says exactly what is measured). The output is ``optreg bench``'s table (or ``--json``); ``--markdown``
adds, per family, the table the docs quote:

    | name | default path | per byte, default | per byte, eager | per byte, compiled | first step s (default) |

(per byte: the step's time per byte touched over fused AdamW's, 1.0 = as bandwidth-efficient; ``-`` where a
path is not timed), under a line naming torch, the threads, the CPU (model name, and whether it has AVX-512 with
bf16, AVX-512 or AVX2 only) and the layout.

* Wrappers whose ``inner`` has no default are timed around a fixed inner optimizer (``WRAPPED``): ``skip_step``
  around ``adamw``, ``mechanic`` and ``schedule_free`` around SGD with ``lr = 1`` (rows ``skip_step(adamw)``,
  ``mechanic(sgd)``, ``schedule_free(sgd)``). A name with other required options is listed as not timed.
* optreg-skipstep's table has an ``over inner`` column, the family's figure of merit (issue 17: <= 1.10): each
  wrapper's step over its inner optimizer's (``skip_step_adamw`` -> ``adamw``, ``skip_step_lion`` -> ``lion``,
  ``skip_step(adamw)`` -> ``adamw``), both on their default paths (eager with ``--no-compile`` when the default is
  ``compile = "auto"``) and timed in the same run: the quotient of their ``x fused`` ratios, so each is taken
  against a fused AdamW step measured alongside it.
* ``--variants`` also times the option variants the family docs quote (``VARIANTS``): ``adamw, bf16 state``,
  ``lion, foreach``, the schedule-free ``foreach`` paths.
* ``--repeat N`` runs everything N times and prints the run whose fused AdamW steps were fastest (the one other
  processes disturbed least), with the first steps of the first run (the compilations); ``--cold`` turns
  inductor's on-disk caches off, so a compiled path's first step is a first compilation, not a cache hit.
* ``--profile NAME`` (repeatable; a registered name or a spec file) prints torch's profiler table of one eager
  step of NAME (top ops by self CPU time): where an eager step's time goes. With no FAMILY it only profiles.

    python bench/family_step.py adam --variants --size 10 --markdown   # docs/adam.md (then --size 50)
    python bench/family_step.py sign --variants --threads 1 --markdown  # docs/sign.md
    python bench/family_step.py skipstep --markdown                     # over inner (issue 17: <= 1.10)
    python bench/family_step.py all --no-compile --steps 5              # every family, eager only
    python bench/family_step.py --profile adopt                         # where an eager adopt step goes

No timed assertions: on a shared machine only the ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
import tomli_w

#: The families ``all`` stands for.
FAMILIES = ("optreg-adam", "optreg-sign", "optreg-schedulefree", "optreg-paramfree", "optreg-skipstep")
#: Families whose markdown table has the ``over inner`` column (their inner optimizers are timed too).
OVER_INNER = ("optreg-skipstep",)
#: The inner optimizer (an ``[optimizer.inner]`` table) of a wrapper whose ``inner`` has no default.
WRAPPED: dict[str, dict[str, Any]] = {
    "skip_step": {"type": "adamw"},
    "mechanic": {"type": "sgd", "lr": 1.0},
    "schedule_free": {"type": "sgd", "lr": 1.0},
}
DEFAULT_INNER: dict[str, Any] = {"type": "sgd", "lr": 1.0}
#: ``--variants``: label -> the ``[optimizer]`` table, per family (the variants the family's doc quotes). No
#: brackets in a label: rich (optreg bench's table) would read ``[foreach]`` as markup and drop it.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "optreg-adam": {"adamw, bf16 state": {"type": "adamw", "state_dtype": "bfloat16"}},
    "optreg-sign": {"lion, foreach": {"type": "lion", "foreach": True}},
    "optreg-schedulefree": {
        f"{name}, foreach": {"type": name, "foreach": True}
        for name in ("schedule_free_adamw", "schedule_free_sgd", "schedule_free_radam")
    },
}


@attrs.define
class Entry:
    """One line of a family's table: what ``bench()`` is given for it and the rows it measured."""

    label: str
    family: str  # the distribution ("" for an inner optimizer timed only for ``over inner``)
    name: str  # the registered name
    arg: str | None  # what bench() gets: the name or a spec file (None: not timed)
    inner: str | None = None  # the bench argument of the inner optimizer (``over inner``)
    why_not: str | None = None  # why it is not timed
    keys: set[str] = attrs.field(factory=set)  # the names bench()'s rows carry for it
    rows: list[Any] = attrs.field(factory=list)


# ------------------------------------------------------------------ families


def _normalize(name: str) -> str:
    """A distribution name compared as pip does (case, ``-``, ``_`` and ``.`` alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve_family(registry: Any, text: str) -> list[str]:
    """The distributions FAMILY stands for: ``all``, ``optreg-sign``, ``sign`` ..."""
    from optreg.cli import UsageError

    if text.strip().lower() == "all":
        return list(FAMILIES)
    known = sorted({p.distribution for p in registry.plugins if p.ok and p.distribution and p.provides["optimizer"]})
    by_norm = {_normalize(d): d for d in known}
    wanted = _normalize(text.strip())
    for candidate in (wanted, f"optreg-{wanted}"):
        if candidate in by_norm:
            return [by_norm[candidate]]
    raise UsageError(f"unknown family {text!r}; installed distributions that register optimizers: "
                     f"{', '.join(known)} (or 'all': {', '.join(FAMILIES)})")


def family_names(registry: Any, distribution: str) -> list[str]:
    """The optimizer names ``distribution`` registers, in its registration order, aliases and clashes left out."""
    out: list[str] = []
    for info in registry.plugins:
        if not info.ok or _normalize(info.distribution or "") != _normalize(distribution):
            continue
        for name in info.provides["optimizer"]:  # canonical names only (no aliases)
            if (registry.lookup("optimizer", name) is not None and registry.provider("optimizer", name) is info
                    and name not in out):
                out.append(name)
    return out


def inner_name(registry: Any, cls: type) -> str | None:
    """The registered optimizer a flat wrapper spec extends (``SkipStepAdamWSpec`` -> ``adamw``), or None."""
    for base in cls.__mro__[1:]:
        kind = vars(base).get("TYPE")
        if isinstance(kind, str) and registry.lookup("optimizer", kind) is base:
            return kind
    return None


def _spec_file(folder: Path, stem: str, table: dict[str, Any]) -> str:
    """A spec file whose ``[optimizer]`` table is ``table`` (what ``optreg bench`` times with its options)."""
    path = folder / (re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") + ".toml")
    path.write_text(tomli_w.dumps({"schema_version": 1, "optimizer": table}), encoding="utf-8")
    return str(path)


def plan(registry: Any, families: list[str], folder: Path, *, variants: bool = False) -> list[Entry]:
    """The entries of ``families`` (then the inner optimizers ``over inner`` needs), spec files in ``folder``."""
    entries: list[Entry] = []
    for family in families:
        for name in family_names(registry, family):
            cls = registry.spec_class("optimizer", name)
            required = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING]
            if not required:
                inner = inner_name(registry, cls)
                entries.append(Entry(name, family, name, name, inner=inner if family in OVER_INNER else None))
            elif required == ["inner"]:
                table = WRAPPED.get(name, DEFAULT_INNER)
                arg = _spec_file(folder, name, {"type": name, "inner": table})
                entries.append(Entry(f"{name}({table['type']})", family, name, arg,
                                     inner=table["type"] if family in OVER_INNER else None))
            else:
                entries.append(Entry(name, family, name, None,
                                     why_not=f"not timed: required options {', '.join(required)}"))
        if variants:
            for label, table in VARIANTS.get(family, {}).items():
                entries.append(Entry(label, family, table["type"], _spec_file(folder, label, table)))
    timed = {e.arg for e in entries}
    for inner in dict.fromkeys(e.inner for e in entries if e.inner):
        if inner not in timed:
            entries.append(Entry(inner, "", inner, inner))
    return entries


# ------------------------------------------------------------------ output


def cpu_description() -> str:
    """The CPU's model name and its widest vector extension (``/proc/cpuinfo``)."""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    if "avx512_bf16" in flags:
        simd = "AVX-512 with bf16 (avx512_bf16)"
    elif "avx512f" in flags:
        simd = "AVX-512 (avx512f), no avx512_bf16"
    elif "avx2" in flags:
        simd = "AVX2 only"
    else:
        simd = "no AVX2" if flags else "flags unknown"
    return f"{model}, {simd}"


def _default(rows: list[Any]) -> Any:
    return next((r for r in rows if r.default), None)


def _path(rows: list[Any], path: str) -> Any:
    return next((r for r in rows if r.path == path), None)


def over_inner(entry: Entry, by_arg: dict[str | None, Entry]) -> tuple[float, str] | None:
    """``entry``'s step over its inner optimizer's, default paths (else eager ones), and the path compared."""
    inner = by_arg.get(entry.inner)
    if inner is None:
        return None
    for pick in (_default, lambda rows: _path(rows, "eager")):
        mine, theirs = pick(entry.rows), pick(inner.rows)
        if mine is not None and theirs is not None and mine.ratio and theirs.ratio:
            return mine.ratio / theirs.ratio, "default" if pick is _default else "eager"
    return None


def _x(row: Any) -> str:
    if row is None:
        return "-"
    if row.error:
        return "failed"
    return "-" if row.per_byte_ratio is None else f"{row.per_byte_ratio:.2f}"


def _first(row: Any) -> str:
    if row is None or row.first_step_s is None:
        return "-"
    return f"{row.first_step_s:.3g}"


def header_line(result: Any, cpu: str, *, compiled: bool) -> str:
    base = result.baseline
    numel = f"{result.numel / 1e6:.1f}M" if result.numel >= 100_000 else f"{result.numel:,}"
    line = (f"torch {result.torch}, {result.threads} threads, {cpu}; {result.params}: {numel} fp32 "
            f"params in {result.tensors} tensors; median of {result.steps} steps, each alternated with a "
            f"torch.optim.AdamW(fused=True) step ({base.step_s * 1e3:.2f} ms)")
    return line + ("" if compiled else "; compiled paths not timed (--no-compile)")


def markdown(result: Any, entries: list[Entry], cpu: str, *, compiled: bool) -> str:
    """The docs' tables: one per family, one row per optimizer (and ``--variants``)."""
    by_arg = {e.arg: e for e in entries if e.arg is not None}
    families = list(dict.fromkeys(e.family for e in entries if e.family))
    out = [header_line(result, cpu, compiled=compiled)]
    for family in families:
        inner_col = family in OVER_INNER
        out.append("")
        if len(families) > 1:
            out += [f"**{family}**", ""]
        cols = ["name", "default path", "per byte, default", "per byte, eager", "per byte, compiled",
                "first step s (default)"] + (["over inner"] if inner_col else [])
        out += ["| " + " | ".join(cols) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(cols) - 2)) + "|"]
        mine = [e for e in entries if e.family == family]
        for entry in mine:
            if entry.why_not:
                cells = [f"`{entry.label}`", entry.why_not] + ["-"] * (len(cols) - 2)
                out.append("| " + " | ".join(cells) + " |")
                continue
            default = _default(entry.rows)
            path = "-" if default is None else re.sub(r"^default \((.*)\)$", r"\1", default.path)
            cells = [f"`{entry.label}`", path, _x(default), _x(_path(entry.rows, "eager")),
                     _x(_path(entry.rows, "compiled")), _first(default)]
            if inner_col:
                found = over_inner(entry, by_arg)
                cells.append("-" if found is None else f"{found[0]:.2f}" + (" (eager)" if found[1] == "eager" else ""))
            out.append("| " + " | ".join(cells) + " |")
        inners = ", ".join(f"`{name}`" for name in dict.fromkeys(e.inner for e in mine if e.inner))
        if inner_col and inners:
            out += ["", f"over inner: the step's `x fused` over its inner optimizer's ({inners}), both on their "
                    "default paths (eager where marked) and timed in the same run"]
    return "\n".join(out)


# ------------------------------------------------------------------ running


def profile_step(registry: Any, name: str, layout: str) -> None:
    """Print torch's profiler table of one eager step of ``name`` (after a first step that creates the state)."""
    import torch
    from optreg_train.bench import WithClosure, candidates, make_params, parse_params
    from torch.profiler import ProfilerActivity, profile

    spec = candidates(registry, name, compile=False)[0].spec  # the eager path
    params = make_params(parse_params(layout))  # optreg bench's: random params, gradients of 1e-2
    optimizer = spec.build(params)
    with torch.no_grad():
        try:
            optimizer.step()
        except Exception as exc:  # one that needs a closure (MoMo, SAM): optreg bench's, gradients put back
            if "closure" not in str(exc).lower():
                raise
            optimizer = WithClosure(optimizer, params)
            optimizer.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            optimizer.step()
    print(f"\n-- where the time of one eager {name} step goes ({layout}; top ops by self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="family_step.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("families", nargs="*", metavar="FAMILY",
                   help="optreg-adam, optreg-sign, optreg-schedulefree, optreg-paramfree, optreg-skipstep (or "
                   "adam, sign, ...; any installed distribution that registers optimizers), or all")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--params", metavar="LAYOUT", help="optreg bench's --params (default 10x1024x1024+10x1024)")
    size.add_argument("--size", type=float, metavar="M", help="optreg bench's --size: about M million params")
    p.add_argument("--steps", type=int, default=20, metavar="N", help="timed steps per path (default 20)")
    p.add_argument("--no-compile", action="store_true", help="time the eager paths only (no compilation)")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's choice)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print optreg bench's JSON (rows named as in the tables) "
                     "plus cpu, families, over_inner")
    out.add_argument("--markdown", action="store_true", help="after the table, the docs' markdown tables")
    p.add_argument("--variants", action="store_true", help="also time the option variants the family docs quote")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run N times, print the run whose fused AdamW steps were fastest (default 1)")
    p.add_argument("--cold", action="store_true", help="inductor caches off: a compiled first step compiles afresh")
    p.add_argument("--profile", action="append", default=[], metavar="NAME",
                   help="print the profiler's top ops of one eager step of NAME (repeatable)")
    args = p.parse_args(argv)
    if not args.families and not args.profile:
        p.error("give a FAMILY (or all), or --profile NAME")
    return args


def run(args: argparse.Namespace) -> int:
    from optreg_train.bench import DEFAULT_PARAMS, bench, candidates, print_table, size_layout

    import optreg
    from optreg.cli import UsageError

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.repeat < 1:
        raise UsageError(f"--repeat must be >= 1, got {args.repeat}")
    layout = size_layout(args.size) if args.size is not None else (args.params or DEFAULT_PARAMS)
    registry = optreg.get_registry()
    families = list(dict.fromkeys(f for text in args.families for f in resolve_family(registry, text)))
    compiled = not args.no_compile
    status = 0

    def progress(message: str) -> None:
        if sys.stderr.isatty():
            print(f"bench: {message}", file=sys.stderr, flush=True)

    if families:
        with tempfile.TemporaryDirectory(prefix="family_step_") as folder:
            entries = plan(registry, families, Path(folder), variants=args.variants)
            timed = [e for e in entries if e.arg is not None]
            for entry in timed:
                entry.keys = {c.name for c in candidates(registry, entry.arg, compile=compiled)}
            runs = [bench([e.arg for e in timed], params=layout, steps=args.steps, compile=compiled,
                          registry=registry, progress=progress) for _ in range(args.repeat)]
        result = min(runs, key=lambda r: r.baseline.step_s)
        for row, first in zip([result.baseline, *result.results], [runs[0].baseline, *runs[0].results]):
            row.first_step_s = first.first_step_s  # the first run's: a compilation, not a cache hit
        for entry in timed:
            entry.rows = [r for r in result.results if r.name in entry.keys]
        for entry in timed:  # rows named as in the markdown (a spec file's row is "kind (file.toml)")
            for row in entry.rows:
                row.name = entry.label
        cpu = cpu_description()
        by_arg = {e.arg: e for e in timed}
        if args.json:
            ratios = {e.label: over_inner(e, by_arg) for e in timed if e.inner}
            data = {**result.to_dict(), "cpu": cpu,
                    "families": {f: [e.label for e in entries if e.family == f] for f in families},
                    "not_timed": {e.label: e.why_not for e in entries if e.why_not},
                    "over_inner": {k: None if v is None else v[0] for k, v in ratios.items()}}
            print(json.dumps(data, indent=2))
        else:
            print_table(result)
            if args.markdown:
                print()
                print(markdown(result, entries, cpu, compiled=compiled))
        for row in result.results:
            if row.error:
                print(f"family_step.py: error: bench {row.name} ({row.path}): {row.error}", file=sys.stderr)
                status = 1
    for name in args.profile:
        profile_step(registry, name, layout)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cold:  # read by inductor when it first compiles
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    from optreg_train.commands import plain_warnings

    from optreg.cli import UsageError
    from optreg.errors import SpecError

    try:
        with plain_warnings():
            return run(args)
    except (UsageError, SpecError, LookupError) as exc:
        print(f"family_step.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
