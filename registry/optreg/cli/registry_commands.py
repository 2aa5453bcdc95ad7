"""``optreg list | show | validate | schema | plugins | groups``: look into the registry and specs."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import optreg
from optreg.cli.text import render_table
from optreg.registry import KINDS, Registry, clash_message

__all__ = ["MODEL_HELP", "register"]

#: ``--model`` of validate, groups and lr: one rule for the model a spec is checked against.
MODEL_HELP = (
    "model to build the spec on: mlp, transformer, or module:factory (a function returning an nn.Module; the "
    "module may be a file in the current directory, e.g. mymodels:build for ./mymodels.py). Default: the model "
    "of the spec's [train] task, else transformer"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="every registered optimizer, scheduler and strategy, and failed plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser("show", help="fields, types, defaults and docs of one registered name")
    p.add_argument("name")
    p.add_argument("--kind", choices=KINDS, help="only look among this kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser(
        "validate",
        help="check spec files as a run would (exit 0 if all are valid, 2 otherwise)",
        description="Check spec files: the TOML, every table and option, then build the optimizer and the "
        "schedule on the spec's model (the model of its [train] task, or --model), so every error a run "
        "would give before it reads data shows here, with the file and the field's path.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="spec files (TOML), e.g. specs/adamw_cosine.toml")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--world-size", type=int, default=1, metavar="N",
        help="count the optimizer state per rank as the spec's [parallelism] shards it over N ranks (default 1)",
    )
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("schema", help="JSON Schema of the spec format (for editor validation of TOML)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_schema)

    p = subparsers.add_parser("plugins", help="every plugin found, its distribution, version and status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--check", action="store_true",
        help="exit 1 when a plugin failed to load or claims a name another plugin claims (for CI)",
    )
    p.set_defaults(func=cmd_plugins)

    p = subparsers.add_parser(
        "groups",
        help="where every parameter of a model goes under a spec",
        description="Show the param group, role, tags and options of every parameter of the spec's model "
        "(the model of its [train] task, or --model) under the spec's optimizer.",
    )
    p.add_argument("file", metavar="FILE", help="a spec file (TOML), e.g. specs/muon.toml")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_groups)


def _registry() -> Registry:
    return optreg.get_registry()


def _owner_label(reg: Registry, kind: str, name: str) -> tuple[str, str, str]:
    info = reg.provider(kind, name)
    return info.name, info.distribution or "", info.version or ""


def summary_line(cls: type) -> str:
    """The first sentence of a spec class's docstring: what ``optreg list`` says of a name."""
    doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    first = doc.split(". ")[0].rstrip(".")
    return first + "." if first else ""


def _clash_rows(reg: Registry) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "name": name, "plugins": [p.name for p in owners],
         "distributions": [p.distribution for p in owners], "message": clash_message(kind, name, owners)}
        for kind in KINDS
        for name, owners in reg.clashes(kind).items()
    ]


def cmd_list(args: argparse.Namespace) -> int:
    reg = _registry()
    rows = []
    for kind in KINDS:
        aliases = reg.aliases(kind)
        for name in reg.names(kind):
            plugin, dist, version = _owner_label(reg, kind, name)
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "aliases": sorted(a for a, t in aliases.items() if t == name),
                    "plugin": plugin,
                    "distribution": dist,
                    "version": version,
                    "description": summary_line(reg.spec_class(kind, name)),
                }
            )
    failed = [p.to_dict() for p in reg.plugins if p.error]
    clashes = _clash_rows(reg)
    if args.json:
        print(json.dumps({"names": rows, "clashes": clashes, "failed_plugins": failed}, indent=2))
        return 0
    blocks = []
    for kind in KINDS:
        table = [
            (r["name"], ", ".join(r["aliases"]), f"{r['distribution'] or r['plugin']} {r['version']}".strip(),
             r["description"])
            for r in rows
            if r["kind"] == kind
        ]
        blocks.append(render_table(("name", "aliases", "from", "description"), table,
                                   title=f"{kind} ({len(table)})"))
    print("\n\n".join(blocks))
    _print_problems(reg)
    return 0


def _print_problems(reg: Registry) -> None:
    clashes = _clash_rows(reg)
    if clashes:
        print("\nnames claimed by several plugins (unusable until you choose):")
        for row in clashes:
            print(f"  {row['message']}")
    failed = [p for p in reg.plugins if p.error]
    if failed:
        print()
        print(render_table(("plugin", "distribution", "version", "error"),
                           [(p.name, p.distribution or "", p.version or "", p.error or "") for p in failed],
                           title="plugins that failed to load"))
    disabled = [p.name for p in reg.plugins if p.disabled]
    if disabled:
        print(f"\ndisabled plugins: {', '.join(disabled)}")


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = _registry()
    problems = bool(reg.failed_plugins or reg.clashing_plugins)
    if args.json:
        print(json.dumps([p.to_dict() for p in reg.plugins], indent=2))
        return 1 if args.check and problems else 0
    rows = []
    for p in reg.plugins:
        if p.disabled:
            status, detail = "disabled", ""
        elif p.error:
            status, detail = "failed", p.error
        else:
            status = "clash" if p.clashes else "ok"
            detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.provides.items() if v)
            if p.clashes:
                detail += f" (also claimed by another plugin: {', '.join(p.clashes)})"
        rows.append((p.name, p.distribution or "", p.version or "", status, detail))
    print(render_table(("plugin", "distribution", "version", "status", "provides / error"), rows,
                       title="optreg plugins"))
    for row in _clash_rows(reg):
        print(row["message"])
    if args.check:
        if problems:
            print("optreg plugins --check: a plugin failed to load or clashes", file=sys.stderr)
            return 1
        print("optreg plugins --check: every plugin loaded, no name is claimed twice", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from optreg.describe import describe

    out = describe(args.name, args.kind, registry=_registry())
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for i, entry in enumerate(out):
        if i:
            print()
        print(f"{entry['kind']} {entry['name']!r}  from {entry['plugin']} "
              f"({entry['distribution'] or '-'} {entry['version'] or ''})".rstrip())
        if entry["aliases"]:
            print(f"aliases: {', '.join(entry['aliases'])}")
        if entry["doc"]:
            print(entry["doc"])
        if entry["paper"]:
            print(f"paper: {entry['paper']}")
        if entry["capabilities"]:
            print(f"capabilities: {', '.join(entry['capabilities'])}")
        if not entry["fields"]:
            print("(no options)")
            continue
        per_group = entry["kind"] == "optimizer"  # only optimizer options can vary per param group
        columns = ("field", "type", "default", "valid", *(("per group",) if per_group else ()), "description")
        rows = [
            (row["name"], row["type"], row["default"], row["bounds"],
             *((("yes" if row["per_group"] else ""),) if per_group else ()), row["doc"])
            for row in entry["fields"]
        ]
        print(render_table(columns, rows))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from optreg.models import spec_model

    if args.world_size < 1:
        print(f"optreg: error: --world-size must be at least 1, got {args.world_size}", file=sys.stderr)
        return 2

    reg = _registry()
    status = 0
    for file in args.files:
        try:
            spec = reg.load_spec(file)
            model, described = spec_model(spec, args.model)
            spec.build_in_process(model)
            estimate = spec.estimate_state(model, world_size=args.world_size)
        except optreg.SpecError as exc:
            print(f"optreg: error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(
            f"{file}: ok (optimizer {spec.optimizer.TYPE}, scheduler {spec.scheduler.TYPE}, "
            f"parallelism {spec.parallelism.TYPE}; built on {described})"
        )
        for line in estimate.lines():
            print(f"  {line}")
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from optreg.schema import json_schema

    text = json.dumps(json_schema(_registry()), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    from optreg.groups import plan_groups
    from optreg.models import spec_model

    reg = _registry()
    spec = reg.load_spec(args.file)
    # Groups come from parameter names, which no strategy changes: the model is used as is, so a distributed
    # spec is shown in one process without launching it.
    model, described = spec_model(spec, args.model)
    try:
        planned = plan_groups(spec.optimizer, model)
    except optreg.SpecError as exc:
        raise exc.in_table("optimizer", args.file) from None
    base = spec.optimizer.group_option_spec().optimizer_kwargs()
    rows: list[dict[str, Any]] = []
    for gi, group in enumerate(planned):
        options = {**{k: v for k, v in base.items() if k in ("lr", "weight_decay")}, **group.options}
        for m in group.members:
            rows.append(
                {
                    "param": m.fqn,
                    "shape": list(m.param.shape),
                    "role": m.role,
                    "tags": sorted(m.tags),
                    "group": gi,
                    "group_name": group.name,
                    "options": {k: v for k, v in options.items() if _is_plain(v)},
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        (row["param"], "x".join(map(str, row["shape"])) or "scalar", row["role"], ",".join(row["tags"]),
         f"{row['group']} {row['group_name']}", ", ".join(f"{k}={v}" for k, v in row["options"].items()))
        for row in rows
    ]
    print(render_table(("parameter", "shape", "role", "tags", "group", "options"), table,
                       title=f"{args.file}: {len(rows)} parameters of {described} in {len(planned)} groups "
                             f"({spec.optimizer.TYPE})"))
    return 0


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, tuple)) or value is None
