"""The example plugin in examples/zoo-example-plugin installs, is found through its entry point, lists and trains.

It is pip-installed offline into a temporary folder (no build isolation, no index) from a copy of its source, so the
repository stays clean and nothing is added to the environment the other tests see.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner

from cmnist_zoo.cli import cli
from cmnist_zoo.registry import ENTRY_POINT_GROUP
from cmnist_zoo.testing import check_variant

from conftest import train_tiny

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zoo-example-plugin"


@pytest.fixture(scope="session")
def installed_example(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("example-src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("example-site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
               "--disable-pip-version-check", "--target", str(target), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture
def example_plugin(installed_example, monkeypatch):
    """The example on sys.path for one test; its modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(installed_example))
    yield installed_example
    for module in [m for m in sys.modules if m.split(".")[0] == "zoo_example_plugin"]:
        del sys.modules[module]


def test_entry_point_is_found(example_plugin):
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert "tiny-mlp" in found
    assert found["tiny-mlp"].value == "zoo_example_plugin"
    assert found["tiny-mlp"].dist.name == "zoo-example-plugin"


def test_zoo_list_shows_the_variant_and_its_distribution(example_plugin):
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("tiny-mlp"))
    assert "zoo-example-plugin 0.1.0" in line
    assert "not loaded" not in result.output


def test_example_passes_the_conformance_check(example_plugin):
    check_variant("tiny-mlp")


def test_example_trains_like_a_built_in_variant(example_plugin, tmp_path):
    run_dir = train_tiny("tiny-mlp", tmp_path / "run")
    assert (run_dir / "model.safetensors").exists() and (run_dir / "reconstructions.png").exists()
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--quiet", "--no-classifier"])
    assert result.exit_code == 0, result.output
