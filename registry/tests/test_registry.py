"""The Registry: plugin loading and isolation, duplicates, env switches, aliases, caching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from support import TorchAdamSpec, plugin_with

import optreg
from optreg import OptimizerSpec, Registry


def write_distribution(root: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str],
                       requires: tuple[str, ...] = ("optreg>=0.1",)) -> None:
    """A real installed distribution (dist-info + modules) on a path entry, as pip would leave it."""
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    requires_lines = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_lines}")
    eps = "[optreg]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (dist_info / "entry_points.txt").write_text(eps)
    (dist_info / "RECORD").write_text("")
    for module, source in modules.items():
        path = root / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
import attrs, torch
from typing import ClassVar
import optreg

@attrs.frozen(kw_only=True)
class PlainSGD(optreg.OptimizerSpec):
    '''SGD without options, from a third-party distribution.'''
    TYPE: ClassVar[str] = "plain_sgd"
    lr: float = optreg.field(0.1, ge=0)
    def create(self, groups, context):
        return torch.optim.SGD(groups, lr=self.lr)

@attrs.frozen(kw_only=True)
class Clash(optreg.OptimizerSpec):
    TYPE: ClassVar[str] = "sgd"

@optreg.hookimpl
def optreg_register_optimizers(register):
    register(PlainSGD)
"""

CLASHING_PLUGIN = GOOD_PLUGIN.replace("register(PlainSGD)", "register(Clash)")


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A directory of installed distributions: a good plugin, one whose import raises, one that clashes."""
    write_distribution(tmp_path, "optreg-goodfam", "1.2.3", {"goodfam": "goodfam_plugin"},
                       {"goodfam_plugin": GOOD_PLUGIN})
    write_distribution(tmp_path, "optreg-brokenfam", "0.0.1", {"brokenfam": "brokenfam_plugin"},
                       {"brokenfam_plugin": "raise ImportError('libbroken.so: cannot open shared object file')\n"})
    write_distribution(tmp_path, "optreg-clashfam", "2.0", {"clashfam": "clashfam_plugin"},
                       {"clashfam_plugin": CLASHING_PLUGIN})
    write_distribution(tmp_path, "optreg-oldfam", "0.5", {"oldfam": "oldfam_plugin"},
                       {"oldfam_plugin": GOOD_PLUGIN.replace("plain_sgd", "old_sgd")}, requires=("optreg<0.1",))
    monkeypatch.syspath_prepend(str(tmp_path))
    for var in ("OPTREG_DISABLE_PLUGINS", "OPTREG_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def by_name(reg: Registry) -> dict[str, optreg.PluginInfo]:
    return {p.name: p for p in reg.plugins}


def test_builtins_are_registered_through_the_hooks():
    reg = Registry(entry_points=False)
    assert reg.names("optimizer") == ["sgd"]
    assert reg.names("scheduler") == ["constant"]
    assert reg.names("parallelism") == ["single"]
    info = reg.provider("optimizer", "sgd")
    assert (info.name, info.distribution, info.version) == ("builtins", "optreg", optreg.__version__)
    assert info.provides == {"optimizer": ["sgd"], "scheduler": ["constant"], "parallelism": ["single"]}


def test_installed_plugins_load_and_broken_ones_are_isolated(site):
    reg = Registry()
    plugins = by_name(reg)
    assert reg.lookup("optimizer", "plain_sgd") is not None
    good = plugins["goodfam"]
    assert (good.distribution, good.version, good.error) == ("optreg-goodfam", "1.2.3", None)
    assert good.provides["optimizer"] == ["plain_sgd"]
    broken = plugins["brokenfam"]
    assert broken.distribution == "optreg-brokenfam" and broken.version == "0.0.1"
    assert "import failed: ImportError: libbroken.so" in broken.error
    assert f"(at {site / 'brokenfam_plugin.py'}:1)" in broken.error, "the error names the file and line"
    clash = plugins["clashfam"]
    assert clash.error is None and clash.clashes == ["optimizer sgd"], "a clash loads both plugins, neither wins"
    assert plugins["builtins"].clashes == ["optimizer sgd"]
    assert reg.lookup("optimizer", "sgd") is None
    with pytest.raises(LookupError, match=r"'sgd' is provided by both optreg 0\.1\.0 .* and optreg-clashfam 2\.0"):
        reg.provider("optimizer", "sgd")
    assert reg.provider("optimizer", "optreg:sgd").distribution == "optreg"
    assert reg.provider("optimizer", "optreg-clashfam:sgd").distribution == "optreg-clashfam"
    old = plugins["oldfam"]
    assert "requires optreg<0.1" in old.error and "not loaded" in old.error
    assert reg.lookup("optimizer", "old_sgd") is None
    spec = reg.parse_spec('[optimizer]\ntype = "plain_sgd"\nlr = 0.5\n')
    assert spec.optimizer.build([optreg_param()]).param_groups[0]["lr"] == 0.5


def optreg_param():
    import torch

    return torch.nn.Parameter(torch.zeros(2))


def test_env_switches_disable_and_restrict(site, monkeypatch):
    monkeypatch.setenv("OPTREG_DISABLE_PLUGINS", "brokenfam, clashfam,oldfam")
    reg = Registry()
    assert not reg.failed_plugins
    assert by_name(reg)["brokenfam"].disabled
    assert reg.lookup("optimizer", "plain_sgd") is not None
    monkeypatch.delenv("OPTREG_DISABLE_PLUGINS")
    monkeypatch.setenv("OPTREG_LOAD_PLUGINS", "goodfam")
    reg = Registry()
    assert [p.name for p in reg.plugins if p.ok] == ["builtins", "goodfam"]
    assert not reg.failed_plugins


def test_cli_reports_a_broken_installed_distribution(site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    out = subprocess.run([sys.executable, "-m", "optreg", "list", "--json"], capture_output=True, text=True, env=env,
                         check=True)
    data = json.loads(out.stdout)
    names = {(row["kind"], row["name"]): row for row in data["names"]}
    assert names[("optimizer", "plain_sgd")]["distribution"] == "optreg-goodfam"
    assert names[("optimizer", "plain_sgd")]["version"] == "1.2.3"
    assert ("optimizer", "sgd") not in names, "a clashed name is listed among the clashes, not the names"
    assert [(c["kind"], c["name"], c["distributions"]) for c in data["clashes"]] == [
        ("optimizer", "sgd", ["optreg", "optreg-clashfam"])
    ]
    failed = {row["name"]: row for row in data["failed_plugins"]}
    assert set(failed) >= {"brokenfam", "oldfam"}
    assert failed["brokenfam"]["distribution"] == "optreg-brokenfam"
    out = subprocess.run([sys.executable, "-m", "optreg", "plugins"], capture_output=True, text=True, env=env,
                         check=True)
    assert "optreg-brokenfam" in out.stdout and "failed" in out.stdout and "libbroken.so" in out.stdout
    assert "clash" in out.stdout and "'sgd' is provided by both" in out.stdout
    check = subprocess.run([sys.executable, "-m", "optreg", "plugins", "--check"], capture_output=True, text=True,
                           env=env)
    assert check.returncode == 1, "plugins --check must fail when a plugin failed or clashes"
    env["OPTREG_DISABLE_PLUGINS"] = "brokenfam,clashfam,oldfam"
    check = subprocess.run([sys.executable, "-m", "optreg", "plugins", "--check"], capture_output=True, text=True,
                           env=env)
    assert check.returncode == 0, check.stderr


def test_a_plugin_raising_in_its_hook_keeps_nothing():
    @attrs.frozen(kw_only=True)
    class Half(OptimizerSpec):
        TYPE = "half"

    class Flaky:
        @optreg.hookimpl
        def optreg_register_optimizers(self, register):
            register(Half)
            raise RuntimeError("boom after registering")

    reg = Registry(plugins=[Flaky()], entry_points=False)
    assert reg.lookup("optimizer", "half") is None
    assert "boom after registering" in reg.plugins[-1].error
    assert reg.plugins[-1].provides["optimizer"] == []
    assert reg.names("optimizer") == ["sgd"]


def test_unknown_hook_is_reported_not_fatal():
    class Typo:
        @optreg.hookimpl
        def optreg_register_optimisers(self, register):
            register(TorchAdamSpec)

    reg = Registry(plugins=[Typo()], entry_points=False)
    assert "unknown hook" in reg.plugins[-1].error
    reg.check_pending()
    assert reg.names("optimizer") == ["sgd"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: int, "expects a subclass of optreg.OptimizerSpec"),
        (lambda: type("NotAttrs", (OptimizerSpec,), {"TYPE": "x"}), "must be an attrs class"),
        (lambda: attrs.frozen(type("BadName", (OptimizerSpec,), {"TYPE": "Bad-Name"})), "lower snake case"),
    ],
)
def test_bad_registrations_are_explained(make, message):
    reg = Registry(plugins=[plugin_with(make())], entry_points=False)
    assert message in reg.plugins[-1].error


def test_duplicate_names_within_and_across_plugins():
    reg = Registry(plugins=[plugin_with(TorchAdamSpec), plugin_with(TorchAdamSpec)], entry_points=False)
    assert [p.clashes for p in reg.plugins[1:]] == [["optimizer torch_adam", "optimizer tadam"]] * 2
    assert reg.lookup("optimizer", "torch_adam") is None and reg.lookup("optimizer", "tadam") is None
    assert "torch_adam" not in reg.names("optimizer")
    reg = Registry(plugins=[plugin_with(TorchAdamSpec, TorchAdamSpec)], entry_points=False)
    assert "registered twice" in reg.plugins[-1].error


@attrs.frozen(kw_only=True)
class ImpostorAdam(OptimizerSpec):
    """A third party's class under someone else's name."""

    TYPE = "torch_adam"
    momentum: float = optreg.field(0.5)

    def create(self, param_groups, context):
        import torch

        return torch.optim.SGD(param_groups, lr=0.1, momentum=self.momentum)


def test_a_clash_never_resolves_by_load_order_and_a_qualified_type_chooses():
    """Whichever plugin loads first, the name is unusable until the user chooses; the error says how."""
    for order in ((TorchAdamSpec, ImpostorAdam), (ImpostorAdam, TorchAdamSpec)):
        reg = Registry(entry_points=False)
        for i, cls in enumerate(order):
            reg.add_plugin(plugin_with(cls), name=f"p{i}", distribution=f"dist-{cls.__name__.lower()}", version="1")
        with pytest.raises(optreg.SpecError) as info:
            reg.parse_spec('[optimizer]\ntype = "torch_adam"\nlr = 0.1\n')
        assert info.value.path == "$.optimizer.type"
        message = info.value.message
        assert "dist-torchadamspec 1" in message and "dist-impostoradam 1" in message and "neither is used" in message
        assert '"dist-torchadamspec:torch_adam"' in message and '"dist-impostoradam:torch_adam"' in message
        assert "OPTREG_DISABLE_PLUGINS=" in message
        spec = reg.parse_spec('[optimizer]\ntype = "dist-torchadamspec:torch_adam"\nlr = 0.1\n')
        assert type(spec.optimizer) is TorchAdamSpec
        assert reg.parse_spec(optreg.dump_spec(spec)) == spec and 'type = "dist-torchadamspec:torch_adam"' in (
            optreg.dump_spec(spec)
        ), "a qualified type must survive the TOML round trip"
        other = optreg.build_optimizer({"type": "dist-impostoradam:torch_adam"}, [optreg_param()], registry=reg)
        assert other.param_groups[0]["momentum"] == 0.5
        with pytest.raises(optreg.SpecError, match="no plugin 'nobody' provides optimizer 'torch_adam'"):
            reg.parse_spec('[optimizer]\ntype = "nobody:torch_adam"\n')


def test_registration_goes_through_pluggy_so_hookwrappers_and_ordering_work():
    calls = []

    class Ordered:
        @optreg.hookimpl(trylast=True)
        def optreg_register_optimizers(self, register):
            calls.append("last")

        @optreg.hookimpl(wrapper=True)
        def optreg_register_schedulers(self, register):
            calls.append("wrapper before")
            result = yield
            calls.append("wrapper after")
            return result

    class OrderedFirst:
        @optreg.hookimpl(tryfirst=True)
        def optreg_register_optimizers(self, register):
            calls.append("first")
            register(TorchAdamSpec)

    reg = Registry(plugins=[Ordered()], entry_points=False)
    assert calls == ["last", "wrapper before", "wrapper after"]
    calls.clear()
    reg.add_plugin(OrderedFirst(), name="first")
    assert calls == ["first"] and reg.provider("optimizer", "torch_adam").name == "first"


def test_aliases_and_lookup_errors():
    reg = Registry(plugins=[plugin_with(TorchAdamSpec)], entry_points=False)
    assert reg.spec_class("optimizer", "tadam") is TorchAdamSpec
    assert reg.aliases("optimizer") == {"tadam": "torch_adam"}
    with pytest.raises(LookupError, match="did you mean 'torch_adam'"):
        reg.spec_class("optimizer", "torch_adm")
    with pytest.raises(ValueError, match="unknown kind"):
        reg.names("optimiser")


def test_get_registry_is_lazy_and_cached(monkeypatch):
    out = subprocess.run(
        [sys.executable, "-c", "import optreg, optreg.registry as r; print(r._default_registry is None)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "True", "importing optreg must not build the registry or load plugins"
    optreg.reset_registry()
    first = optreg.get_registry()
    assert optreg.get_registry() is first
    optreg.reset_registry()
    assert optreg.get_registry() is not first


# ---------------------------------------------------------------- tables and commands of plugins


@attrs.frozen(kw_only=True)
class EvalTable:
    """A plugin's [evaluation] table."""

    every: int = optreg.field(10, ge=1, doc="Steps between evaluations.")


class TablePlugin:
    __name__ = "tables"

    @optreg.hookimpl
    def optreg_register_tables(self, register):
        register("evaluation", EvalTable)


def test_a_plugin_table_is_read_validated_defaulted_and_dumped():
    reg = Registry(plugins=[TablePlugin()], entry_points=False)
    assert reg.tables() == {"evaluation": EvalTable}
    spec = reg.parse_spec('[optimizer]\ntype = "sgd"\n[evaluation]\nevery = 5\n')
    assert spec.evaluation == EvalTable(every=5)
    assert reg.parse_spec(optreg.dump_spec(spec)) == spec and "[evaluation]" in optreg.dump_spec(spec)
    assert reg.parse_spec('[optimizer]\ntype = "sgd"\n').evaluation == EvalTable(), "an absent table reads as defaults"
    with pytest.raises(optreg.SpecError) as info:
        reg.parse_spec('[optimizer]\ntype = "sgd"\n[evaluation]\nevery = 0\n[evalution]\n')
    assert {p for p, _ in info.value.errors} == {"$.evaluation.every", "$.evalution"}
    assert "did you mean 'evaluation'" in dict(info.value.errors)["$.evalution"]
    from optreg.schema import json_schema

    assert "evaluation" in json_schema(reg)["properties"]
    with pytest.raises(AttributeError, match="no \\[train\\] table"):
        _ = spec.train


@pytest.mark.parametrize(
    ("name", "cls", "message"),
    [
        ("Bad-Name", EvalTable, "lower snake case"),
        ("optimizer", EvalTable, "the core's own"),
        ("evaluation", dict, "frozen attrs class"),
        ("evaluation", attrs.frozen(type("NoDefault", (), {"__annotations__": {"every": int}})), "needs a default"),
    ],
)
def test_bad_tables_are_explained(name, cls, message):
    class Bad:
        @optreg.hookimpl
        def optreg_register_tables(self, register):
            register(name, cls)

    reg = Registry(plugins=[Bad()], entry_points=False)
    assert message in reg.plugins[-1].error and reg.tables() == {}


def test_a_table_two_plugins_register_is_read_by_neither():
    reg = Registry(plugins=[TablePlugin(), TablePlugin()], entry_points=False)
    assert reg.tables() == {} and set(reg.table_clashes()) == {"evaluation"}
    with pytest.raises(optreg.SpecError, match=r"\[evaluation\] table is registered by both"):
        reg.parse_spec('[optimizer]\ntype = "sgd"\n[evaluation]\nevery = 5\n')


def test_plugins_add_commands_and_a_conflicting_one_is_isolated(capsys):
    from optreg.cli import build_parser

    def command_plugin(text):
        class Commands:
            @optreg.hookimpl
            def optreg_register_commands(self, subparsers):
                parser = subparsers.add_parser("hello", help="say hello")
                parser.set_defaults(func=lambda args: print(text) or 0)

        return Commands()

    reg = Registry(plugins=[command_plugin("first"), command_plugin("second")], entry_points=False)
    parser = build_parser(reg)
    args = parser.parse_args(["hello"])
    assert args.func(args) == 0 and capsys.readouterr().out == "first\n"
    assert reg.plugins[1].error is None
    assert "its commands could not be added" in reg.plugins[2].error and "hello" in reg.plugins[2].error
    assert "list" in parser._subparsers._group_actions[0].choices, "the core's commands stay"


def test_register_all_takes_the_specs_of_each_hooks_kind():
    from optreg.builtins import ConstantSchedule

    @attrs.frozen(kw_only=True)
    class LinearTest(optreg.SchedulerSpec):
        TYPE = "linear_test"

        def get_lr(self, initial_lr, current, t_max):
            return initial_lr

    all_specs = (TorchAdamSpec, LinearTest)

    class Plugin:
        @optreg.hookimpl
        def optreg_register_optimizers(self, register):
            register.all(all_specs)

        @optreg.hookimpl
        def optreg_register_schedulers(self, register):
            register.all(all_specs)

    reg = Registry(plugins=[Plugin()], entry_points=False)
    assert reg.plugins[-1].provides["optimizer"] == ["torch_adam"]
    assert reg.plugins[-1].provides["scheduler"] == ["linear_test"]
    assert ConstantSchedule is reg.spec_class("scheduler", "constant")


def test_a_name_is_found_ignoring_case_and_dashes():
    """Users type torch's class names (``AdamW``, ``SGD``) and dashes; registered names are lower-case snake case,
    so that reading is never ambiguous. Spec dumps keep the registered spelling."""
    registry = optreg.get_registry()
    assert registry.canonical("optimizer", "AdamW") == "adamw"
    assert registry.canonical("optimizer", "skip-step-AdamW") == "skip_step_adamw"
    assert registry.spec_class("optimizer", "SGD") is registry.spec_class("optimizer", "sgd")
    assert registry.provider("optimizer", "AdamW") == registry.provider("optimizer", "adamw")
    spec = optreg.parse_spec({"optimizer": {"type": "AdamW", "lr": 1e-3}})
    assert spec.optimizer.TYPE == "adamw" and 'type = "adamw"' in optreg.dump_spec(spec)
    assert registry.canonical("optimizer", "no_such_name") is None
