"""``optreg new-plugin NAME [--dir DIR]``: start a plugin distribution from the template.

The template (``plugins/_template`` in the repository) ships inside the core
package as ``optreg/templates/plugin`` so the command works from an installed
wheel. It is a complete plugin named ``myfamily``: copying it and replacing that
placeholder (``myfamily`` -> NAME, ``Myfamily`` -> the CamelCase NAME,
``optreg-myfamily`` -> ``optreg-NAME``) gives a plugin whose tests pass as
generated.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["PLACEHOLDER", "core_requirement", "generate_plugin", "register", "template_root"]

#: The plugin name the template is written with.
PLACEHOLDER = "myfamily"
#: What the template's pyproject says about the core; rewritten to the running core's minor series.
TEMPLATE_CORE_REQUIREMENT = '"optreg>=0.1,<0.2"'
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
#: Files and folders never copied from the template (build and test leftovers).
_SKIP_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "build", "dist", ".venv"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "new-plugin",
        help="create a plugin distribution (optreg-NAME) from the template",
        description="Create optreg-NAME: one optimizer, one LR schedule, an entry point and a test suite that "
        "uses the conformance kit; its tests pass as generated.",
    )
    p.add_argument("name", metavar="NAME", help="the family name, lower snake case (e.g. adan or my_family)")
    p.add_argument(
        "--dir", metavar="DIR", help="where to create it (default: ./optreg-NAME); must not exist or be empty"
    )
    p.set_defaults(func=cmd_new_plugin)


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from optreg.cli import UsageError

    target = Path(args.dir) if args.dir else Path(distribution_name(args.name))
    try:
        written = generate_plugin(args.name, target)
    except OSError as exc:  # the target exists, or cannot be written
        raise UsageError(str(exc)) from None
    dist = distribution_name(args.name)
    print(f"created {dist} in {target} ({len(written)} files)")
    print("next:")
    print(f"  cd {target}")
    print("  pip install -e '.[test]'    # in the environment where optreg is installed")
    print("  python -m pytest tests")
    print(f"  optreg list      # shows {args.name}_sgdw and {args.name}_linear from {dist}")
    print("(while the optreg core is not on the package index, install it from its checkout first:")
    print(" pip install -e /path/to/optreg; see the generated README)")
    return 0


def template_root() -> Traversable:
    """The plugin template shipped in the core package."""
    root = resources.files("optreg") / "templates" / "plugin"
    if not root.is_dir():  # pragma: no cover - a broken installation
        raise FileNotFoundError(f"the plugin template is missing from this optreg installation ({root})")
    return root


def check_name(name: str) -> str:
    """Validate a family name; raise ``ValueError`` saying what is valid."""
    if name.startswith(("optreg-", "optreg_")):
        raise ValueError(f"give the family name without the optreg prefix (e.g. {name[7:]!r}); it is added for you")
    if not _NAME_RE.match(name):
        raise ValueError(
            f"plugin name {name!r} must be lower snake case: a letter, then letters, digits and single "
            "underscores (e.g. adan or my_family); it prefixes the registered names"
        )
    return name


def distribution_name(name: str) -> str:
    return "optreg-" + check_name(name).replace("_", "-")


def camel_case(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def core_requirement(version: str | None = None) -> str:
    """The ``optreg`` requirement a new plugin gets: the running core's minor series (``>=X.Y,<X.Y+1``)."""
    from packaging.version import Version

    from optreg import __version__

    v = Version(version or __version__)
    return f"optreg>={v.major}.{v.minor},<{v.major}.{v.minor + 1}"


def _walk(node: Traversable, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name in _SKIP_NAMES or child.name.endswith(_SKIP_SUFFIXES):
            continue
        if child.is_dir():
            yield from _walk(child, prefix + (child.name,))
        else:
            yield prefix + (child.name,), child


def render(text: str, name: str) -> str:
    """Replace the template's placeholder name in a file's text."""
    dist = distribution_name(name)
    text = text.replace(TEMPLATE_CORE_REQUIREMENT, f'"{core_requirement()}"')
    text = text.replace(f"optreg-{PLACEHOLDER}", dist)
    text = text.replace(PLACEHOLDER.capitalize(), camel_case(name))
    text = text.replace(PLACEHOLDER.upper(), name.upper())
    return text.replace(PLACEHOLDER, name)


def generate_plugin(name: str, target: str | Path, *, template: Traversable | None = None) -> list[Path]:
    """Write the plugin ``optreg-NAME`` into ``target``; returns the files written.

    ``target`` must not exist or be an empty directory (nothing is overwritten).
    """
    check_name(name)
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} already exists and is not an empty directory; choose another --dir")
    files = list(_walk(template or template_root()))
    if not any(parts == ("pyproject.toml",) for parts, _ in files):
        raise FileNotFoundError("the plugin template has no pyproject.toml")
    written = []
    for parts, source in files:
        dest = target.joinpath(*(part.replace(PLACEHOLDER, name) for part in parts))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(render(source.read_text(encoding="utf-8"), name), encoding="utf-8")
        written.append(dest)
    return written
