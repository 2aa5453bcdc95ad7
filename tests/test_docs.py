"""The docs site builds strictly (with and without family pages) and the hand-written pages stay true.

- ``mkdocs build --strict`` (what ``make docs`` runs) passes on the real docs,
  and on copies with no family page and with extra ones: the nav is built from
  the files that exist, so a family page arriving or missing never breaks it.
- Generated reference pages exist for every registered name.
- docs/cli.md documents every command and option of the real parser;
  docs/writing-plugins.md names every check, capability and case field of the
  kit; docs/spec-format.md lists every ``[train]`` key; every full TOML spec in
  the core pages validates.
"""

from __future__ import annotations

import argparse
import html
import inspect
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import attrs
import pytest
import torch
from optreg_train.specs import TrainSpec

import optreg
from optreg.cli import build_parser
from optreg.registry import KINDS
from optreg.specs import spec_fields
from optreg.testing import (
    CAPABILITIES,
    CHECKS,
    ErrorCase,
    OptimizerCase,
    OptimizerConformance,
    SchedulerCase,
    SchedulerConformance,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CORE_PAGES = (
    "index.md", "spec-format.md", "cli.md", "python-api.md", "training.md", "writing-plugins.md", "numerics.md"
)


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- the site


def _config(tmp: Path, docs_dir: Path) -> Path:
    """A copy of mkdocs.yml pointing at ``docs_dir`` (the hook stays the repository's)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    text = text.replace("docs_dir: docs", f"docs_dir: {docs_dir}")
    text = text.replace("- docs/_hooks/optreg_docs.py", f"- {ROOT / 'docs' / '_hooks' / 'optreg_docs.py'}")
    config = tmp / "mkdocs.yml"
    config.write_text(text, encoding="utf-8")
    return config


_BUILD = """\
import logging, sys
from mkdocs.commands.build import build
from mkdocs.config import load_config

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
for config, site in zip(sys.argv[1::2], sys.argv[2::2]):
    print("building", config, flush=True)
    build(load_config(config_file=config, site_dir=site, strict=True))  # what `mkdocs build --strict` runs
"""
"""Builds several sites in one process: the registry (and torch) is imported once, not per site."""


def _build_sites(builds: dict[str, tuple[Path, Path]]) -> None:
    args = [str(x) for config, site in builds.values() for x in (config, site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _BUILD, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, f"a strict docs build failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


FAKE_FAMILY = """# Fake family

A stand-in for a family page, with a [link back home](index.md) and a table:

| name | what |
| --- | --- |
| `sgd` | the core's |
"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="the docs extra is not installed (pip install -e '.[docs]')")
    tmp = tmp_path_factory.mktemp("docs")
    builds: dict[str, tuple[Path, Path]] = {"real": (ROOT / "mkdocs.yml", tmp / "real" / "site")}
    fakes = {"adam.md": FAKE_FAMILY, "zz-extra.md": FAKE_FAMILY, "adam/more.md": FAKE_FAMILY.replace("](", "](../")}
    for name, extra in (("no-families", {}), ("fake-families", fakes)):
        docs = tmp / name / "docs"
        shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_hooks", "__pycache__"))
        for page in docs.glob("*.md"):
            if page.name not in CORE_PAGES:
                page.unlink()
        for file, text in extra.items():
            (docs / file).parent.mkdir(parents=True, exist_ok=True)
            (docs / file).write_text(text.replace("Fake family", f"Fake {file[:-3]}"), encoding="utf-8")
        builds[name] = (_config(tmp / name, docs), tmp / name / "site")
    _build_sites(builds)
    return {name: site for name, (_, site) in builds.items()}


def test_site_builds_strictly_with_every_family_page_in_the_nav(sites: dict[str, Path]) -> None:
    site = sites["real"]
    home = (site / "index.html").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"
        if page.name not in CORE_PAGES:
            assert f'href="{page.stem}/"' in home, f"family page {page.name} is not in the nav"


def test_reference_pages_cover_every_registered_name(sites: dict[str, Path]) -> None:
    registry = optreg.Registry()
    site = sites["real"]
    index = _text(site / "reference" / "index.html")
    for kind in KINDS:
        for name in registry.names(kind):
            page = site / "reference" / kind / name / "index.html"
            assert page.is_file(), f"no reference page for {kind} {name}"
            text = _text(page)
            cls = registry.spec_class(kind, name)
            if cls.PAPER:
                assert html.unescape(cls.PAPER) in text
            for field in spec_fields(cls):
                if field.name not in ("group_overrides", "no_decay", "roles"):
                    assert field.name in text, f"{name}: option {field.name} missing from its reference page"
            assert name in index
    assert (site / "reference" / "optreg.schema.json").is_file()
    sgd = _text(site / "reference" / "optimizer" / "sgd" / "index.html")
    assert "Sutskever" in sgd and "Learning rate." in sgd and "provided by" in sgd


def test_nav_tolerates_missing_and_extra_family_pages(sites: dict[str, Path]) -> None:
    bare = sites["no-families"]
    assert "No family pages yet." in _text(bare / "index.html")
    fake = sites["fake-families"]
    home = (fake / "index.html").read_text(encoding="utf-8")
    assert (fake / "adam" / "index.html").is_file() and (fake / "zz-extra" / "index.html").is_file()
    assert (fake / "adam" / "more" / "index.html").is_file()
    assert home.index('href="adam/"') < home.index('href="adam/more/"') < home.index('href="zz-extra/"')
    assert "Fake adam" in _text(fake / "index.html")  # its title, in the home page list


def test_make_docs_target_is_strict() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docs:.*\n\t.*mkdocs build --strict", makefile, re.M)


# ---------------------------------------------------------------- the hand-written pages


def _commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _cli_section(command: str) -> str:
    match = re.search(rf"^## `optreg {re.escape(command)}`\n(.*?)(?=^## |\Z)", _read("cli.md"), re.S | re.M)
    assert match, f"docs/cli.md has no '## `optreg {command}`' section"
    return match.group(1)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_and_option_is_in_cli_md(command: str) -> None:
    section = _cli_section(command)
    for action in _commands()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = action.option_strings or [action.metavar or action.dest.upper()]
        for name in names:
            assert f"`{name}`" in section, f"docs/cli.md: `optreg {command}` does not document {name}"


def test_kit_reference_names_every_check_capability_and_field() -> None:
    text = _read("writing-plugins.md")
    tests = {n for cls in (OptimizerConformance, SchedulerConformance) for n in dir(cls) if n.startswith("test_")}
    fields = {f.name for cls in (OptimizerCase, SchedulerCase, ErrorCase) for f in attrs.fields(cls)}
    for name in sorted(tests | CHECKS | CAPABILITIES | fields):
        assert f"`{name}`" in text or f"{name}=" in text, f"docs/writing-plugins.md does not mention {name}"


def test_train_table_lists_every_key() -> None:
    section = _read("spec-format.md").split("### `[train]`")[1].split("\n## ")[0]
    for field in attrs.fields(TrainSpec):
        assert f"`{field.name}`" in section, f"docs/spec-format.md [train] table misses {field.name}"


def _toml_specs() -> list:
    out = []
    for page in CORE_PAGES:
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", _read(page), re.S)):
            if re.search(r"^schema_version", block, re.M):  # a whole spec file, not a fragment
                out.append(pytest.param(page, i, block, id=f"{page}-{i}"))
    return out


@pytest.mark.parametrize(("page", "index", "text"), _toml_specs())
def test_spec_examples_in_the_docs_validate(page: str, index: int, text: str) -> None:
    optreg.Registry().parse_spec(text, file=f"docs/{page} (toml block {index})")


def test_readme_quick_start_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no Python quick start"
    monkeypatch.chdir(ROOT)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    assert "sgd" in capsys.readouterr().out


# ---------------------------------------------------------------- update rules in optimizer docstrings

_RULE_BLOCK = re.compile(r"::\n\n((?:[ \t]+\S.*\n|\n)+)")


def update_rule_of(doc: str | None) -> str | None:
    """The update rule a class docstring states: a literal block (after ``::``) holding an assignment.

    The rule reads like ``m <- beta1 * m + (1 - beta1) * g`` or ``p = p - lr * u``: equations, not
    prose, so a reader can check them against the paper (and against the code).
    """
    text = inspect.cleandoc(doc or "") + "\n"
    for block in _RULE_BLOCK.findall(text):
        if re.search(r"(<-|←|[^=!<>]=[^=])", block):
            return block
    return None


def _optimizer_classes() -> list:
    registry = optreg.Registry()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    out = []
    for name in registry.names("optimizer"):
        cls = registry.spec_class("optimizer", name)
        data: dict = {"type": name}
        if any(f.name == "inner" for f in attrs.fields(cls)):
            data["inner"] = {"type": "sgd", "lr": 0.1}
        with warnings.catch_warnings():  # skip_step around SGD warns of its host-synced fallback: expected here
            warnings.filterwarnings("ignore", "skip_step: SGD does not accept step_factor", RuntimeWarning)
            optimizer = registry.build_optimizer(data, model)
        for built in (optimizer, getattr(optimizer, "inner", None)):
            if built is not None and type(built).__module__.split(".")[0] != "torch":
                out.append(pytest.param(type(built), id=f"{name}-{type(built).__name__}"))
    return out


@pytest.mark.parametrize("cls", _optimizer_classes())
def test_every_optimizer_class_states_its_update_rule(cls: type) -> None:
    assert update_rule_of(cls.__doc__), (
        f"{cls.__module__}.{cls.__qualname__}: the class docstring states no update rule (a literal block "
        "after `::` with the equations, e.g. `m <- beta1 * m + (1 - beta1) * g`), the reference, and what "
        "differs from the paper or the peer package"
    )


def test_the_update_rule_check_fails_for_a_class_without_one() -> None:
    class Bare(torch.optim.SGD):
        """A fine optimizer, trust us."""

    class Prose(torch.optim.SGD):
        """The update is the gradient times the learning rate, subtracted from the parameter."""

    class Stated(torch.optim.SGD):
        """SGD.

        Update::

            p <- p - lr * g
        """

    assert update_rule_of(Bare.__doc__) is None and update_rule_of(Prose.__doc__) is None
    assert update_rule_of(Stated.__doc__) == "    p <- p - lr * g\n"
