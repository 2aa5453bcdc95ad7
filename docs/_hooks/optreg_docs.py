"""MkDocs hooks of the optreg site: reference pages from the registry, and a nav that fits the files.

- ``on_config`` builds the nav: the core pages, then every other ``docs/*.md``
  (the algorithm families, whichever exist), then the generated reference.
  A nav entry to a missing file fails ``mkdocs build --strict``, so nothing is
  listed that is not there.
- ``on_files`` adds the generated pages: ``reference/index.md`` (every name with
  its plugin) and one page per registered optimizer, scheduler and strategy
  (fields, types, defaults, bounds, docstring, paper, an example table), plus
  ``reference/optreg.schema.json``. They come from ``optreg.Registry()`` at build
  time, so they list what is installed and never go stale.
- ``on_page_markdown`` fills ``<!-- optreg:families -->`` in the home page.

A plugin that fails to load is a warning, which ``--strict`` turns into a failed build.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import tomli_w
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.plugins.optreg")

#: Pages of the core docs, in nav order (title, file).
CORE_PAGES = [
    ("Home", "index.md"),
    ("Spec format", "spec-format.md"),
    ("Command line", "cli.md"),
    ("Python API", "python-api.md"),
    ("Training and comparing", "training.md"),
    ("Writing plugins", "writing-plugins.md"),
    ("Numerics", "numerics.md"),
]
#: Family pages in this order first; any other docs/*.md follows alphabetically.
FAMILY_ORDER = [
    "adam", "sign", "muon", "paramfree", "schedulefree", "skipstep", "contrib", "torch", "schedules", "parallel"
]
KIND_TITLES = {"optimizer": "Optimizers", "scheduler": "LR schedules", "parallelism": "Parallelism strategies"}
TABLE_KEYS = {"optimizer": "optimizer", "scheduler": "scheduler", "parallelism": "parallelism"}
#: Keys every optimizer has (documented once, in the spec format page).
COMMON_OPTIMIZER_FIELDS = ("group_overrides", "no_decay", "roles")

_state: dict[str, Any] = {}


# ---------------------------------------------------------------- nav


def family_pages(docs_dir: Path) -> list[tuple[str, str]]:
    """(title, path) for every page that is not a core page: the families, in FAMILY_ORDER first.

    Pages in sub-folders (``muon/dion.md``) are listed too, after their family's page, so that no
    page is left out of the nav (``omitted_files: warn`` would fail the strict build).
    """
    core = {file for _, file in CORE_PAGES}
    pages = [
        p.relative_to(docs_dir)
        for p in docs_dir.rglob("*.md")
        if p.relative_to(docs_dir).as_posix() not in core
        and not any(part.startswith(("_", ".")) or part == "reference" for part in p.relative_to(docs_dir).parts)
    ]
    rank = {name: i for i, name in enumerate(FAMILY_ORDER)}

    def key(rel: Path) -> tuple:
        family = rel.parts[0].removesuffix(".md")
        return (rank.get(family, len(rank)), family, len(rel.parts), rel.as_posix())

    return [(page_title(docs_dir / rel), rel.as_posix()) for rel in sorted(pages, key=key)]


def page_title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


def reference_nav(registry: Any) -> list[Any]:
    from optreg.registry import KINDS

    nav: list[Any] = [{"Overview": "reference/index.md"}]
    for kind in KINDS:
        names = registry.names(kind)
        if names:
            nav.append({KIND_TITLES[kind]: [{name: f"reference/{kind}/{name}.md"} for name in names]})
    return nav


def on_config(config: Any) -> Any:
    import optreg

    registry = optreg.Registry()
    _state["registry"] = registry
    for plugin in registry.failed_plugins:
        log.warning("optreg plugin %s (%s) failed to load: %s", plugin.name, plugin.label, plugin.error)
    docs_dir = Path(config["docs_dir"])
    _state["families"] = family_pages(docs_dir)
    nav: list[Any] = [{title: file} for title, file in CORE_PAGES[:3] if (docs_dir / file).exists()]
    if _state["families"]:
        nav.append({"Families": [file for _, file in _state["families"]]})  # titles: each page's own H1
    nav += [{title: file} for title, file in CORE_PAGES[3:] if (docs_dir / file).exists()]
    nav.append({"Reference": reference_nav(registry)})
    config["nav"] = nav
    return config


# ---------------------------------------------------------------- generated pages


def on_files(files: Files, config: Any) -> Files:
    from optreg.registry import KINDS
    from optreg.schema import json_schema

    registry = _state["registry"]
    files.append(File.generated(config, "reference/index.md", content=reference_index(registry)))
    for kind in KINDS:
        for name in registry.names(kind):
            content = reference_page(registry, kind, name)
            files.append(File.generated(config, f"reference/{kind}/{name}.md", content=content))
    schema = json.dumps(json_schema(registry), indent=2) + "\n"
    files.append(File.generated(config, "reference/optreg.schema.json", content=schema))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if "<!-- optreg:families -->" in markdown:
        items = [f"- [{title}]({file})" for title, file in _state.get("families", []) if "/" not in file]
        markdown = markdown.replace("<!-- optreg:families -->", "\n".join(items) or "_No family pages yet._")
    return markdown


def plain_to_md(text: str) -> str:
    """Plain docstring text as Markdown: `*` and `_` outside code spans are literal, not emphasis."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else re.sub(r"([*_])", r"\\\1", p) for p in parts)


def _md_docstring(cls: type) -> str:
    """A class docstring as Markdown: ``code`` -> `code`, Sphinx roles dropped, ``::`` blocks kept as code."""
    text = inspect.cleandoc(cls.__doc__ or "")
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = re.sub(r"::\n\n", ":\n\n", text)
    blocks = text.split("\n\n")
    return "\n\n".join(b if b.startswith("    ") else plain_to_md(b) for b in blocks)


def _cell(value: Any) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text or " "


def _summary(cls: type) -> str:
    doc = _md_docstring(cls)
    return doc.split("\n\n")[0].replace("\n", " ") if doc else ""


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[len("v = ") :].strip()


def _toml_table(kind: str, data: dict[str, Any]) -> str:
    lines = [f"[{TABLE_KEYS[kind]}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in data.items() if not isinstance(value, dict)]
    return "\n".join(lines) + "\n"


def example_toml(kind: str, cls: type) -> str:
    """A table that parses as this spec: its defaults, or the ``type`` line and the required keys."""
    from optreg.convert import spec_to_dict
    from optreg.schema import field_rows

    try:
        data = spec_to_dict(cls())
    except Exception:  # noqa: BLE001 - required fields: show what must be given
        required = [row for row in field_rows(cls) if row["default"] == "(required)"]
        text = _toml_table(kind, {"type": cls.TYPE})
        return text + "".join(f"# {row['name']} = ...  (required: {row['type']})\n" for row in required)
    for key in COMMON_OPTIMIZER_FIELDS if kind == "optimizer" else ():
        data.pop(key, None)
    return _toml_table(kind, data)


def reference_page(registry: Any, kind: str, name: str) -> str:
    from optreg.schema import field_rows

    cls = registry.spec_class(kind, name)
    info = registry.provider(kind, name)
    aliases = sorted(a for a, t in registry.aliases(kind).items() if t == name)
    lines = [f"# {name}", ""]
    meta = [f"**{kind}** provided by `{info.distribution or info.name}` {info.version or ''}".rstrip()]
    meta.append(f"(plugin `{info.name}`, class `{cls.__module__}.{cls.__qualname__}`)")
    lines += [" ".join(meta), ""]
    if aliases:
        lines += ["Also accepted as: " + ", ".join(f"`{a}`" for a in aliases), ""]
    doc = _md_docstring(cls)
    if doc:
        lines += [doc, ""]
    if getattr(cls, "PAPER", ""):
        lines += [f"**Paper:** {plain_to_md(cls.PAPER)}", ""]
    capabilities = sorted(getattr(cls, "CAPABILITIES", ()))
    if capabilities:
        lines += ["**Capabilities:** " + ", ".join(f"`{c}`" for c in capabilities), ""]
    rows = [r for r in field_rows(cls) if not (kind == "optimizer" and r["name"] in COMMON_OPTIMIZER_FIELDS)]
    lines += ["## Options", ""]
    if rows:
        header = "| key | type | default | valid | per group | description |"
        lines += [header, "| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            per_group = "yes" if r["per_group"] and kind == "optimizer" else ""
            cells = (f"`{r['name']}`", r["type"], f"`{r['default']}`", r["bounds"], per_group, plain_to_md(r["doc"]))
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    else:
        lines += ["No options besides `type`.", ""]
    if kind == "optimizer":
        lines += [
            "Every optimizer also takes `group_overrides`, `no_decay` and `roles`: see "
            "[param groups](../../spec-format.md#param-groups).",
            "",
        ]
    lines += ["## Example", "", "```toml", example_toml(kind, cls).rstrip(), "```", ""]
    lines += [f"Run `optreg show {name}` for the same information from the installed packages.", ""]
    return "\n".join(lines)


def reference_index(registry: Any) -> str:
    from optreg.registry import KINDS

    lines = [
        "# Reference",
        "",
        "Every name registered when these pages were built, generated from the registry "
        "(`optreg list` shows the same for your installation). The JSON Schema of the spec format "
        "for these names is [optreg.schema.json](optreg.schema.json) (`optreg schema` writes yours).",
        "",
    ]
    for kind in KINDS:
        names = registry.names(kind)
        lines += [f"## {KIND_TITLES[kind]}", ""]
        if not names:
            lines += ["None registered.", ""]
            continue
        lines += ["| name | aliases | provided by | summary |", "| --- | --- | --- | --- |"]
        for name in names:
            cls = registry.spec_class(kind, name)
            info = registry.provider(kind, name)
            aliases = ", ".join(f"`{a}`" for a, t in sorted(registry.aliases(kind).items()) if t == name)
            provider = f"{info.distribution or info.name} {info.version or ''}".strip()
            link = f"[`{name}`]({kind}/{name}.md)"
            lines.append("| " + " | ".join(_cell(c) for c in (link, aliases, provider, _summary(cls))) + " |")
        lines.append("")
    failed = registry.failed_plugins
    if failed:
        lines += ["## Plugins that failed to load", ""]
        lines += [f"- `{p.name}` ({p.label}): {p.error}" for p in failed]
        lines.append("")
    return "\n".join(lines)
