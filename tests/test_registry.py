"""The plugin registry: built-ins come through entry points, a broken plugin never takes the others down."""

from __future__ import annotations

import types
from dataclasses import dataclass
from importlib.metadata import entry_points as real_entry_points

import pytest
from click.testing import CliRunner

from cmnist_zoo import Variant, hookimpl
from cmnist_zoo import registry as registry_module
from cmnist_zoo.cli import cli
from cmnist_zoo.config import StrictModel
from cmnist_zoo.errors import ZooError
from cmnist_zoo.registry import Registry, get_registry, reset_registry

from conftest import assert_clean_failure


@dataclass
class FakeDist:
    name: str
    version: str = "9.9"


class FakeEntryPoint:
    """Stands in for an installed third-party package's entry point."""

    def __init__(self, name, loader, dist="fake-dist"):
        self.name, self.value, self._loader, self.dist = name, f"fake_{name}", loader, FakeDist(dist)

    def load(self):
        return self._loader()


def plugin_module(*names):
    module = types.ModuleType("fake_plugin")

    @hookimpl
    def register_variants(register):
        for name in names:
            register(Variant(name=name, description=f"fake {name}", config=StrictModel, build=lambda c: None))

    module.register_variants = register_variants
    return module


def install_fakes(monkeypatch, *fakes):
    def fake_entry_points(group):
        return list(real_entry_points(group=group)) + list(fakes)

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)


def raise_on_import():
    raise ImportError("No module named 'missing_dependency'")


@pytest.fixture(autouse=True)
def lenient_default(monkeypatch):
    """CI runs with ZOO_STRICT_PLUGINS set; these tests are about the default and set the flags themselves."""
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_NO_EXTERNAL_PLUGINS", raising=False)


def test_builtin_variants_register_through_entry_points():
    ours = {ep.name for ep in real_entry_points(group="cmnist_zoo") if ep.dist and ep.dist.name == "cmnist-zoo"}
    listed = {v.name: v for v in get_registry().list()}
    assert "concrete" in ours and ours <= set(listed)
    assert listed["concrete"].distribution == "cmnist-zoo"


def test_broken_plugin_is_reported_and_others_keep_working(monkeypatch):
    install_fakes(monkeypatch, FakeEntryPoint("broken", raise_on_import), FakeEntryPoint("good", lambda: plugin_module("extra")))
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    assert "concrete" in result.output and "extra" in result.output
    failures = [line for line in result.output.splitlines() if "broken" in line]
    assert len(failures) == 1 and "missing_dependency" in failures[0]


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    install_fakes(monkeypatch, FakeEntryPoint("broken", raise_on_import))
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    assert_clean_failure(CliRunner().invoke(cli, ["list"]), "broken", "missing_dependency")


def test_no_external_plugins_loads_only_the_builtins(monkeypatch):
    install_fakes(monkeypatch, FakeEntryPoint("good", lambda: plugin_module("extra")))
    monkeypatch.setenv("ZOO_NO_EXTERNAL_PLUGINS", "1")
    names = [v.name for v in get_registry().list()]
    assert "concrete" in names and "extra" not in names


def test_duplicate_variant_name_is_an_error_naming_both_plugins(monkeypatch):
    install_fakes(monkeypatch, FakeEntryPoint("copycat", lambda: plugin_module("concrete")))
    assert_clean_failure(CliRunner().invoke(cli, ["list"]), "'concrete'", "'copycat'")


def wrongly_named_argument():
    module = types.ModuleType("misspelt")

    @hookimpl
    def register_variants(registr):  # pluggy refuses an argument the hook does not have
        pass

    module.register_variants = register_variants
    return module


def test_a_plugin_pluggy_refuses_is_reported_and_others_keep_working(monkeypatch):
    install_fakes(monkeypatch, FakeEntryPoint("misspelt", wrongly_named_argument),
                  FakeEntryPoint("good", lambda: plugin_module("extra")))
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.exception
    assert "concrete" in result.output and "extra" in result.output
    failures = [line for line in result.output.splitlines() if "misspelt" in line]
    assert len(failures) == 1 and "registr" in failures[0] and "not loaded" in failures[0]
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    reset_registry()
    assert_clean_failure(CliRunner().invoke(cli, ["list"]), "misspelt", "registr")


def test_two_entry_points_of_one_name_keep_the_first_and_report_the_second(monkeypatch):
    install_fakes(monkeypatch, FakeEntryPoint("twin", lambda: plugin_module("first")),
                  FakeEntryPoint("twin", lambda: plugin_module("second")))
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.exception
    assert "first" in result.output and "second" not in result.output
    failures = [line for line in result.output.splitlines() if "twin" in line and "not loaded" in line]
    assert len(failures) == 1 and "'twin' is already taken by fake-dist" in failures[0]
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    reset_registry()
    assert_clean_failure(CliRunner().invoke(cli, ["list"]), "'twin' is already taken")


def test_registering_something_that_is_not_a_variant_names_the_plugin():
    module = types.ModuleType("bad")

    @hookimpl
    def register_variants(register):
        register({"name": "nope"})

    module.register_variants = register_variants
    registry = Registry()
    registry.add_plugin(module, "bad-plugin")
    assert [f.plugin for f in registry.failures] == ["bad-plugin"]
    assert "not a cmnist_zoo.Variant" in registry.failures[0].reason
    assert registry.list() == []


@pytest.mark.parametrize("defaults, named", [({"batch_sise": 16}, "batch_sise"), ({"batch_size": 1}, "batch_size")])
def test_training_defaults_a_variant_cannot_train_with_are_refused_naming_it(defaults, named):
    module = types.ModuleType("odd")

    @hookimpl
    def register_variants(register):
        register(Variant(name="odd", description="odd defaults", config=StrictModel, build=lambda c: None,
                         train_defaults=defaults))

    module.register_variants = register_variants
    registry = Registry()
    registry.add_plugin(module, "odd-plugin")
    assert [f.plugin for f in registry.failures] == ["odd-plugin"]
    assert "bad train_defaults" in registry.failures[0].reason and named in registry.failures[0].reason
    assert registry.list() == []


def test_list_filters_by_wildcard_and_unknown_names_are_explained():
    registry = get_registry()
    assert [v.name for v in registry.list("conc*")] == ["concrete"]
    with pytest.raises(ZooError, match="unknown variant 'nope'.*concrete"):
        registry.get("nope")


def test_listing_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from cmnist_zoo.cli import main; sys.argv=['zoo','list','--schema']; \n" \
           "try:\n main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'zoo list imported torch'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "model.code_dim" in done.stdout
