"""The Registry: loads plugins through entry points and maps names to spec classes.

Loading is explicit (nothing loads when ``optreg`` is imported) and isolated:
each entry point is loaded in its own ``try``; a broken plugin is recorded with
its distribution, version and error and never takes the others down.

Two plugins claiming one name: neither gets it. Load order decides nothing (an
entry point named ``aaa_x`` must not take ``adamw`` from its real provider):
both plugins load, the name becomes ambiguous, and using it is an error that
names both distributions and how to choose: a qualified type
``"<distribution>:<name>"`` (``"optreg-adam:adamw"``), or disabling a plugin.

Environment: ``OPTREG_DISABLE_PLUGINS`` and ``OPTREG_LOAD_PLUGINS`` are comma
lists of entry point names that block, or restrict to, those plugins.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import threading
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pluggy

from optreg import hookspecs
from optreg.errors import PluginError, SpecError
from optreg.runspec import RunSpec
from optreg.specs import OptimizerSpec, ParallelismSpec, SchedulerSpec, Spec, spec_fields
from optreg.tomlfiles import parse_toml

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "Registry", "clash_message", "get_registry", "reset_registry"]

ENTRY_POINT_GROUP = "optreg"
KINDS = ("optimizer", "scheduler", "parallelism")
_HOOK_KIND = {
    "optreg_register_optimizers": ("optimizer", OptimizerSpec),
    "optreg_register_schedulers": ("scheduler", SchedulerSpec),
    "optreg_register_parallelism_strategies": ("parallelism", ParallelismSpec),
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@attrs.define
class PluginInfo:
    """One plugin as the registry saw it: where it came from, what it provides, or why it failed."""

    name: str
    distribution: str | None = None
    version: str | None = None
    provides: dict[str, list[str]] = attrs.field(factory=lambda: {k: [] for k in KINDS})
    error: str | None = None
    disabled: bool = False
    #: ``"kind name"`` entries this plugin claims that another plugin claims too (neither resolves).
    clashes: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.disabled

    @property
    def label(self) -> str:
        dist = self.distribution or "(not installed)"
        return f"{dist} {self.version}" if self.version else dist

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _core_version() -> str:
    from optreg import __version__

    return __version__


def _split_env(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class Registry:
    """Names -> spec classes for optimizers, schedulers and parallelism strategies.

    ``Registry()`` loads the built-ins and every installed plugin; tests pass
    ``entry_points=False`` and their own ``plugins=[...]`` for an isolated one.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        entry_points: bool = True,
        builtins: bool = True,
        disable: Iterable[str] | None = None,
        only: Iterable[str] | None = None,
        group: str = ENTRY_POINT_GROUP,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        # every claim of a name (canonical or alias) by a plugin: (plugin, class)
        self._claims: dict[tuple[str, str], list[tuple[PluginInfo, type[Spec]]]] = {}
        # resolved views, rebuilt from the claims: names claimed once only
        self._classes: dict[str, dict[str, type[Spec]]] = {k: {} for k in KINDS}
        self._aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        self._owners: dict[tuple[str, str], PluginInfo] = {}
        self.plugins: list[PluginInfo] = []
        # top-level tables of spec files that plugins read: name -> claims (plugin, class)
        self._table_claims: dict[str, list[tuple[PluginInfo, type]]] = {}
        self._converter = None
        if builtins:
            from optreg import builtins as builtin_module

            self.add_plugin(builtin_module, name="builtins", distribution="optreg", version=_core_version())
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self.add_plugin(plugin, name=name)
        if entry_points:
            env_disable = _split_env("OPTREG_DISABLE_PLUGINS") or set()
            env_only = _split_env("OPTREG_LOAD_PLUGINS")
            disable_set = set(disable or ()) | env_disable
            only_set = set(only) if only is not None else env_only
            self._load_entry_points(group, disable_set, only_set)
        self._pm.check_pending()

    # ------------------------------------------------------------ loading

    def _load_entry_points(self, group: str, disable: set[str], only: set[str] | None) -> None:
        seen: set[tuple[str, str]] = set()
        eps = sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)
        for ep in eps:
            if (ep.name, ep.value) in seen:
                continue
            seen.add((ep.name, ep.value))
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            if ep.name in disable or (only is not None and ep.name not in only):
                info.disabled = True
                self.plugins.append(info)
                continue
            incompatible = _incompatible_core(dist)
            if incompatible:
                info.error = incompatible
                self.plugins.append(info)
                continue
            try:
                plugin = ep.load()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                info.error = f"import failed: {type(exc).__name__}: {exc}{_where(exc)}"
                self.plugins.append(info)
                continue
            self._add(plugin, info)

    def add_plugin(
        self, plugin: Any, *, name: str, distribution: str | None = None, version: str | None = None
    ) -> PluginInfo:
        """Register a plugin object (module or instance with hookimpls); returns its :class:`PluginInfo`."""
        taken = {p.name for p in self.plugins}
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}#{n}"
        info = PluginInfo(name=unique, distribution=distribution, version=version)
        self._add(_hashable(plugin, unique), info)
        self._converter = None
        return info

    def _add(self, plugin: Any, info: PluginInfo) -> None:
        self.plugins.append(info)
        try:
            self._pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001 - e.g. malformed hookimpl or name clash
            info.error = f"could not register: {type(exc).__name__}: {exc}"
            return
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._pm.unregister(plugin)
            info.error = f"unknown hook: {exc}"
            return
        staged: list[tuple[str, type[Spec], tuple[str, ...]]] = []
        others = [p for _, p in self._pm.list_name_plugin() if p is not None and p is not plugin]
        try:
            for hook_name, (kind, base) in _HOOK_KIND.items():
                register = Register(kind, base, staged)
                # pluggy's own call machinery (ordering, hookwrappers, tracing), restricted to this plugin so
                # every name is attributed to the plugin that registered it
                self._pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
            tables: list[tuple[str, type]] = []

            def register_table(name: str, cls: type) -> None:
                tables.append((_check_table(name, cls), cls))

            self._pm.subset_hook_caller("optreg_register_tables", remove_plugins=others)(register=register_table)
            self._commit(staged, info)
            for name, cls in tables:
                self._table_claims.setdefault(name, []).append((info, cls))
                info.provides.setdefault("table", []).append(name)
        except Exception as exc:  # noqa: BLE001 - isolate the failing plugin, keep nothing it registered
            self._pm.unregister(plugin)
            info.error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            info.provides = {k: [] for k in KINDS}

    def _commit(self, staged: list[tuple[str, type[Spec], tuple[str, ...]]], info: PluginInfo) -> None:
        claimed: dict[tuple[str, str], str] = {}
        for kind, cls, aliases in staged:
            for name in (cls.TYPE, *cls.ALIASES, *aliases):
                if not _NAME_RE.match(name):
                    raise PluginError(f"{kind} name {name!r} of {cls.__qualname__} is not lower snake case")
                key = (kind, name)
                if key in claimed:
                    raise PluginError(f"{kind} name {name!r} is registered twice by plugin {info.name!r}")
                claimed[key] = cls.TYPE
        for kind, cls, aliases in staged:
            info.provides[kind].append(cls.TYPE)
            for name in (cls.TYPE, *cls.ALIASES, *aliases):
                self._claims.setdefault((kind, name), []).append((info, cls))
        self._resolve()

    def _resolve(self) -> None:
        """Rebuild the name -> class views: a name claimed by two plugins resolves to neither."""
        self._classes = {k: {} for k in KINDS}
        self._aliases = {k: {} for k in KINDS}
        self._owners = {}
        for plugin in self.plugins:
            plugin.clashes = []
        for (kind, name), claims in self._claims.items():
            if len({id(info) for info, _ in claims}) > 1:
                for info, _ in claims:
                    entry = f"{kind} {name}"
                    if entry not in info.clashes:
                        info.clashes.append(entry)
                continue
            info, cls = claims[0]
            self._owners[(kind, name)] = info
            if name == cls.TYPE:
                self._classes[kind][name] = cls
            else:
                self._aliases[kind][name] = cls.TYPE

    # ------------------------------------------------------------ queries

    def names(self, kind: str) -> list[str]:
        """Sorted canonical names of a kind: ``"optimizer"``, ``"scheduler"`` or ``"parallelism"``.

        A name two plugins claim is not listed (it resolves to neither): see :meth:`clashes`.
        """
        return sorted(self._classes[_check_kind(kind)])

    def aliases(self, kind: str) -> dict[str, str]:
        """Alias -> canonical name for a kind."""
        return dict(self._aliases[_check_kind(kind)])

    def tables(self) -> dict[str, type]:
        """Top-level spec-file tables that plugins read (``"train"`` -> its class); a clashed name is left out."""
        return {name: claims[0][1] for name, claims in self._table_claims.items() if len(claims) == 1}

    def table_clashes(self) -> dict[str, list[PluginInfo]]:
        """Table names several plugins register (none of them is read)."""
        return {name: [info for info, _ in claims] for name, claims in self._table_claims.items() if len(claims) > 1}

    def add_commands(self, subparsers: Any) -> None:
        """Let every loaded plugin add its ``optreg`` subcommands (``optreg_register_commands``), each on its own.

        A plugin whose registration raises (e.g. a command name another plugin took) keeps none of its
        commands and has the reason recorded (``PluginInfo.error``); the others are unaffected.
        """
        plugins = [(name, p) for name, p in self._pm.list_name_plugin() if p is not None]
        infos = {p.name: p for p in self.plugins}
        for name, plugin in plugins:
            caller = self._pm.subset_hook_caller(
                "optreg_register_commands", remove_plugins=[p for _, p in plugins if p is not plugin]
            )
            if not caller.get_hookimpls():
                continue
            before = dict(subparsers.choices)
            try:
                caller(subparsers=subparsers)
            except Exception as exc:  # noqa: BLE001 - isolate the plugin, keep the other commands
                for added in set(subparsers.choices) - set(before):
                    del subparsers.choices[added]
                info = infos.get(name)
                if info is not None:
                    info.error = f"its commands could not be added: {type(exc).__name__}: {exc}"

    def clashes(self, kind: str) -> dict[str, list[PluginInfo]]:
        """Names of a kind that several plugins claim -> those plugins (none of them resolves the name)."""
        kind = _check_kind(kind)
        out: dict[str, list[PluginInfo]] = {}
        for (k, name), claims in sorted(self._claims.items()):
            owners = list({id(info): info for info, _ in claims}.values())
            if k == kind and len(owners) > 1:
                out[name] = sorted(owners, key=lambda p: (p.distribution or "", p.name))
        return out

    def lookup(self, kind: str, name: str) -> type[Spec] | None:
        """The spec class for ``name`` (an alias, or ``"<distribution>:<name>"``), or ``None``.

        ``None`` also for a name two plugins claim: :meth:`spec_class` says why.
        """
        kind = _check_kind(kind)
        if ":" in name:
            found = self._qualified(kind, name)
            return found[1] if found else None
        return self._classes[kind].get(self.canonical(kind, name) or name)

    def canonical(self, kind: str, name: str) -> str | None:
        """The registered name ``name`` means, or ``None``: itself, the name an alias stands for, or the same
        ignoring case and ``-`` for ``_`` (``AdamW`` -> ``adamw``, ``schedule-free-adamw``): registered names
        are lower-case snake case, so that reading is never ambiguous."""
        kind = _check_kind(kind)
        for spelling in (name, name.lower().replace("-", "_")):
            spelling = self._aliases[kind].get(spelling, spelling)
            if spelling in self._classes[kind] or (kind, spelling) in self._owners:
                return spelling
        return None

    def _qualified(self, kind: str, name: str) -> tuple[PluginInfo, type[Spec]] | None:
        """``"<distribution>:<name>"`` (or ``"<plugin>:<name>"``) -> the claim of that plugin."""
        qualifier, _, base = name.partition(":")
        wanted = _normalize(qualifier)
        for info, cls in self._claims.get((kind, base), []):
            if wanted in (_normalize(info.distribution or ""), _normalize(info.name)):
                return info, cls
        return None

    def spec_class(self, kind: str, name: str) -> type[Spec]:
        """The spec class for ``name``; raises ``LookupError`` listing the registered names (or the clash)."""
        cls = self.lookup(kind, name)
        if cls is None:
            raise LookupError(self.unknown_name_message(kind, name))
        return cls

    def provider(self, kind: str, name: str) -> PluginInfo:
        """The plugin that registered ``name`` (``"<distribution>:<name>"`` picks one of a clash)."""
        kind = _check_kind(kind)
        if ":" in name:
            found = self._qualified(kind, name)
            if found is None:
                raise LookupError(self.unknown_name_message(kind, name))
            return found[0]
        self.spec_class(kind, name)
        return self._owners[(kind, self.canonical(kind, name) or name)]

    def unknown_name_message(self, kind: str, name: str) -> str:
        from optreg.suggest import COMMON_NAMES, did_you_mean

        base = name.partition(":")[2] if ":" in name else name
        clash = self.clashes(kind).get(base)
        if clash and ":" not in name:
            return clash_message(kind, base, clash)
        if ":" in name and (kind, base) in self._claims:
            qualifiers = [info.distribution or info.name for info, _ in self._claims[(kind, base)]]
            return (
                f"no plugin {name.partition(':')[0]!r} provides {kind} {base!r}; "
                f"it is provided by {', '.join(repr(q) for q in qualifiers)}"
            )
        known = self.names(kind) + sorted(self._aliases[kind])
        hint = did_you_mean(name, known, COMMON_NAMES.get(kind))
        msg = f"unknown {kind} type {name!r}{hint}; registered: {', '.join(self.names(kind))}"
        failed = [p for p in self.plugins if p.error]
        if failed:
            msg += "; plugins that failed to load: " + ", ".join(f"{p.name} ({p.label}): {p.error}" for p in failed)
        disabled = [p.name for p in self.plugins if p.disabled]
        if disabled:
            msg += "; disabled plugins: " + ", ".join(disabled)
        return msg

    @property
    def failed_plugins(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]

    @property
    def clashing_plugins(self) -> list[PluginInfo]:
        """Plugins that claim a name another plugin claims too."""
        return [p for p in self.plugins if p.clashes]

    def check_pending(self) -> None:
        """Fail if any registered plugin implements a hook optreg does not define."""
        self._pm.check_pending()

    # ------------------------------------------------------------ specs

    @property
    def converter(self):
        """This registry's strict cattrs converter (built after the plugins load)."""
        if self._converter is None:
            from optreg.convert import make_converter

            self._converter = make_converter(self)
        return self._converter

    def structure(self, data: Any, cls: Any, *, file: str | None = None, path_prefix: str = "$") -> Any:
        """Structure ``data`` as ``cls`` strictly; raise :class:`SpecError` with every problem found."""
        from optreg.convert import flatten_errors
        from optreg.errors import format_path

        try:
            return self.converter.structure(data, cls)
        except SpecError:
            raise
        except Exception as exc:  # noqa: BLE001 - every structuring failure becomes a SpecError
            errors = [(path_prefix + format_path(p)[1:], m) for p, m in flatten_errors(exc)]
            raise SpecError(errors[0][1], path=errors[0][0], file=file, errors=errors) from None

    def parse_spec(self, source: str | Mapping[str, Any], *, file: str | None = None) -> RunSpec:
        """A :class:`~optreg.RunSpec` from TOML text or a mapping, validated against this registry's names."""
        data = parse_toml(source, file=file) if isinstance(source, str) else dict(source)
        spec = self.structure(data, RunSpec, file=file)
        return attrs.evolve(spec, source=file) if file else spec

    def load_spec(self, path: str | os.PathLike[str]) -> RunSpec:
        """A :class:`~optreg.RunSpec` from a TOML file; every error names the file."""
        file = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError("file not found", path="$", file=file) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read the file: {exc}", path="$", file=file) from None
        return self.parse_spec(text, file=file)

    def optimizer_spec(self, spec: Any) -> OptimizerSpec:
        return self._coerce(spec, "optimizer", OptimizerSpec)

    def scheduler_spec(self, spec: Any) -> SchedulerSpec:
        return self._coerce(spec, "scheduler", SchedulerSpec)

    def parallelism_spec(self, spec: Any) -> ParallelismSpec:
        return self._coerce(spec, "parallelism", ParallelismSpec)

    def _coerce(self, spec: Any, kind: str, base: type) -> Any:
        if isinstance(spec, base):
            return spec
        if isinstance(spec, Mapping):
            return self.structure(dict(spec), base)
        raise TypeError(f"expected a {kind} spec, a dict or a TOML table, got {type(spec).__name__}")

    def build_optimizer(self, spec: Any, model_or_params: Any, **kwargs: Any):
        """Build a ``torch.optim.Optimizer`` from a spec, dict or TOML table."""
        return self.optimizer_spec(spec).build(model_or_params, **kwargs)

    def build_scheduler(self, spec: Any, optimizer: Any, *, t_max: int | None = None):
        """Build an LR scheduler (a ``torch.optim.lr_scheduler.LRScheduler``) from a spec, dict or TOML table."""
        return self.scheduler_spec(spec).build(optimizer, t_max=t_max)

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(self._classes[k])} {k}" for k in KINDS)
        return f"<optreg.Registry {counts}; {len(self.plugins)} plugins>"


class Register:
    """The ``register`` callback a registration hook receives: ``register(cls, aliases=())`` one class, or
    ``register.all(specs.ALL_SPECS)`` every class of the hook's kind among a plugin's specs."""

    def __init__(self, kind: str, base: type, staged: list) -> None:
        self.kind = kind
        self.base = base
        self._staged = staged

    def __call__(self, cls: type, *, aliases: Iterable[str] = ()) -> None:
        self._staged.append((self.kind, _check_spec_class(cls, self.kind, self.base), tuple(aliases)))

    def all(self, classes: Iterable[type]) -> None:
        """Register each class of ``classes`` that is a spec of this hook's kind (the others are left to theirs)."""
        for cls in classes:
            if isinstance(cls, type) and issubclass(cls, self.base):
                self(cls)

    def __repr__(self) -> str:
        return f"<optreg register callback for {self.kind} specs>"


def _where(exc: BaseException) -> str:
    """`` (at file:line)``: the innermost frame of the failing import outside Python's import machinery."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename
              and not f.filename.startswith("<frozen") and f.filename != __file__]
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _hashable(plugin: Any, name: str) -> Any:
    """pluggy keeps plugins in sets: an unhashable plugin object (a SimpleNamespace) gets a module holding its hooks."""
    try:
        hash(plugin)
    except TypeError:
        module = types.ModuleType(name)
        for attr in dir(plugin):
            if attr.startswith("optreg_"):
                setattr(module, attr, getattr(plugin, attr))
        return module
    return plugin


def _normalize(name: str) -> str:
    """A distribution or plugin name compared as pip does (case, ``-``, ``_`` and ``.`` alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def clash_message(kind: str, name: str, owners: list[PluginInfo]) -> str:
    """Why ``name`` does not resolve, and the two ways to choose (plugins in a fixed order, not load order)."""
    owners = sorted(owners, key=lambda p: (p.distribution or "", p.name))
    who = " and ".join(f"{p.label} (plugin {p.name!r})" for p in owners)
    qualified = " or ".join(f'"{p.distribution or p.name}:{name}"' for p in owners)
    disable = " or ".join(f"OPTREG_DISABLE_PLUGINS={p.name}" for p in owners if p.name != "builtins")
    return (
        f"{kind} {name!r} is provided by both {who}, so neither is used; choose one with a qualified type "
        f"(type = {qualified})" + (f" or disable a plugin ({disable})" if disable else "")
    )


def _check_table(name: Any, cls: Any) -> str:
    """Validate a table a plugin registers: a lower snake case name the core does not read, a frozen attrs class."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PluginError(f"table name {name!r} must be lower snake case")
    if name in RunSpec.CORE_KEYS:
        raise PluginError(f"table name {name!r} is the core's own")
    if not (isinstance(cls, type) and "__attrs_attrs__" in cls.__dict__ and _is_frozen(cls)):
        raise PluginError(f"table [{name}] needs a frozen attrs class (@attrs.frozen(kw_only=True)), got {cls!r}")
    missing = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING]
    if missing:
        raise PluginError(f"table [{name}]: every field needs a default (a file may leave the table out): {missing}")
    return name


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def _check_spec_class(cls: Any, kind: str, base: type) -> type[Spec]:
    """Validate a class handed to ``register``; raise :class:`PluginError` explaining what is wrong."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{kind} registration expects a subclass of optreg.{base.__name__}, got {cls!r}")
    if "__attrs_attrs__" not in cls.__dict__:  # attrs.has() is also true for a plain subclass of an attrs class
        raise PluginError(f"{cls.__qualname__} must be an attrs class (decorate it with @attrs.frozen(kw_only=True))")
    if not _is_frozen(cls):
        raise PluginError(f"{cls.__qualname__} must be frozen (@attrs.frozen)")
    type_name = getattr(cls, "TYPE", None)
    if not isinstance(type_name, str) or not _NAME_RE.match(type_name):
        raise PluginError(f"{cls.__qualname__}.TYPE must be a lower snake case string, got {type_name!r}")
    from optreg.convert import field_types

    try:
        hints = field_types(cls)
    except Exception as exc:
        raise PluginError(f"{cls.__qualname__}: cannot resolve field annotations: {exc}") from exc
    for f in spec_fields(cls):
        tp = hints[f.name]
        if _admits_none(tp) and f.default is not None:
            raise PluginError(
                f"{cls.__qualname__}.{f.name} may be None, so its default must be None "
                "(TOML has no null: leaving the key out is how a user writes None)"
            )
    return cls


def _is_frozen(cls: type) -> bool:
    params = getattr(cls, "__attrs_attrs__", None)
    return params is not None and getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


def _admits_none(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return type(None) in typing.get_args(tp)
    return tp is type(None)


def _incompatible_core(dist: Any) -> str | None:
    """Why a plugin distribution cannot run with the installed core, from its ``optreg`` requirement."""
    if dist is None:
        return None
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # pragma: no cover - packaging ships with pip
        return None
    core = Version(_core_version())
    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except Exception:  # noqa: BLE001 - malformed metadata is not ours to judge
            continue
        if req.name.lower().replace("_", "-") != "optreg":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.specifier and not req.specifier.contains(core, prereleases=True):
            return (
                f"incompatible with the installed core: requires optreg{req.specifier}, "
                f"but optreg {core} is installed; not loaded"
            )
    return None


_default_registry: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, built (and plugins loaded) on first use, then cached."""
    global _default_registry
    if _default_registry is None:
        with _default_lock:
            if _default_registry is None:
                _default_registry = Registry()
    return _default_registry


def reset_registry() -> None:
    """Forget the cached registry (e.g. after installing a plugin in the same process)."""
    global _default_registry
    with _default_lock:
        _default_registry = None
