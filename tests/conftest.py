"""Shared fixtures: an isolated data cache, a tiny synthetic data set, small trained runs, and the real data if given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY = "synthetic:6"  # 6 writers x 15 characters x 10 samples = 900 images; writer split 4/1/1


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Tests never read or write the user's data cache, and never see the user's ZOO_DATA."""
    saved = {k: os.environ.get(k) for k in ("ZOO_CACHE_DIR", "ZOO_DATA")}
    os.environ["ZOO_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.pop("ZOO_DATA", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def fresh_registry():
    """Each test sees the installed plugins only, loaded afresh."""
    from cmnist_zoo.registry import reset_registry

    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def tiny_data() -> str:
    return TINY


def train_tiny(variant: str, out: Path, epochs: int = 1, **train_values):
    """Train a variant briefly on the tiny synthetic set through the same path as `zoo train`."""
    from cmnist_zoo import training
    from cmnist_zoo.registry import reset_registry

    reset_registry()
    values = {"epochs": epochs, "batch_size": 64, **train_values}
    trainer = training.start(variant, TINY, values, {}, out, quiet=True)
    return trainer.fit()


@pytest.fixture(scope="session")
def concrete_run(tmp_path_factory) -> Path:
    return train_tiny("concrete", tmp_path_factory.mktemp("runs") / "concrete")


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory) -> Path:
    return train_tiny("vae", tmp_path_factory.mktemp("runs") / "vae")


@pytest.fixture(scope="session")
def cvae_run(tmp_path_factory) -> Path:
    return train_tiny("cvae", tmp_path_factory.mktemp("runs") / "cvae")


@pytest.fixture(scope="session")
def real_data() -> str:
    """The real Chinese MNIST, from ZOO_TEST_DATA; tests that need it are skipped with a reason without it."""
    path = os.environ.get("ZOO_TEST_DATA")
    if not path or not Path(path).exists():
        pytest.skip("the real Chinese MNIST is not available: set ZOO_TEST_DATA to the zip (CI points it at "
                    "../shared/datasets/chinese_mnist.zip)")
    return path


def assert_clean_failure(result, *expected: str) -> None:
    """A CLI failure the user can act on: a non-zero exit through click's own error path, naming each expected text.

    CliRunner keeps an escaped exception in result.exception instead of printing a traceback, so checking the
    output for "Traceback" proves nothing; a clean failure is one that ended in SystemExit.
    """
    import traceback

    escaped = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"an exception escaped:\n{escaped}"
    for text in expected:
        assert text in result.output, f"{text!r} not in the output:\n{result.output}"


def installed_variants() -> list[str]:
    """The variants the registry holds, for parametrising a test over every installed one (third parties' too)."""
    from cmnist_zoo.registry import list_variants, reset_registry

    reset_registry()
    try:
        return [v.name for v in list_variants()]
    finally:
        reset_registry()
