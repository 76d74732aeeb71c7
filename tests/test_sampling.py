"""`zoo sample`: new images from a run's prior, repeatable by seed, by character for conditional models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cmnist_zoo.cli import cli
from cmnist_zoo.sampling import sample_run

from conftest import assert_clean_failure


def _zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _refused(result, *words):
    assert_clean_failure(result, "Error:", *words)


def test_sample_writes_a_png(vae_run, tmp_path):
    out = tmp_path / "new.png"
    result = _zoo("sample", vae_run, "--n", 6, "--seed", 4, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in result.output


def test_same_seed_gives_the_same_images_and_another_seed_others(vae_run, tmp_path):
    _, first = sample_run(vae_run, 6, None, 11, tmp_path / "a.png")
    _, again = sample_run(vae_run, 6, None, 11, tmp_path / "b.png")
    _, other = sample_run(vae_run, 6, None, 12, tmp_path / "c.png")
    assert first.images.shape == (6, 64, 64)
    assert np.array_equal(first.images, again.images)
    assert not np.allclose(first.images, other.images)


def test_different_labels_give_different_images(cvae_run, tmp_path):
    _, seven = sample_run(cvae_run, 4, "七", 0, tmp_path / "7.png")
    _, ten = sample_run(cvae_run, 4, "十", 0, tmp_path / "10.png")
    assert (seven.codes == 8).all() and (ten.codes == 11).all()
    assert np.abs(seven.images - ten.images).mean() > 1e-4


def test_a_label_is_a_character_or_its_code(cvae_run, tmp_path):
    _, by_character = sample_run(cvae_run, 3, "七", 5, tmp_path / "a.png")
    _, by_code = sample_run(cvae_run, 3, "8", 5, tmp_path / "b.png")
    assert np.array_equal(by_character.images, by_code.images)


def test_conditional_model_without_label_draws_a_row_per_character(cvae_run):
    result = _zoo("sample", cvae_run, "--n", 3, "--seed", 2)
    assert result.exit_code == 0, result.output
    assert (cvae_run / "samples-all-seed2.png").exists()
    _, samples = sample_run(cvae_run, 3, None, 2, cvae_run / "grid.png")
    assert samples.images.shape == (45, 64, 64)
    assert samples.codes.tolist() == [c for c in range(1, 16) for _ in range(3)]
    assert len(samples.row_titles()) == 15


def test_model_without_prior_samples_a_fitted_gaussian_and_says_so(concrete_run, tmp_path):
    result = _zoo("sample", concrete_run, "--n", 5, "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "no prior" in line]
    assert len(notes) == 1 and "diagonal Gaussian fitted" in notes[0]
    assert (tmp_path / "c.png").exists()
    _, first = sample_run(concrete_run, 5, None, 0, tmp_path / "d.png")
    _, again = sample_run(concrete_run, 5, None, 0, tmp_path / "e.png")
    assert np.array_equal(first.images, again.images) and first.note


def test_unknown_label_is_refused(cvae_run):
    _refused(_zoo("sample", cvae_run, "--label", "cat"), "unknown label 'cat'")
    _refused(_zoo("sample", cvae_run, "--label", "16"), "unknown label '16'")


def test_label_for_a_model_without_classes_is_refused(vae_run):
    _refused(_zoo("sample", vae_run, "--label", "七"), "--label", "takes no class")


def test_zero_images_are_refused(vae_run):
    _refused(_zoo("sample", vae_run, "--n", 0), "--n")


def test_output_must_be_a_png_in_an_existing_folder(vae_run, tmp_path):
    _refused(_zoo("sample", vae_run, "--out", tmp_path / "samples.jpg"), ".png")
    _refused(_zoo("sample", vae_run, "--out", tmp_path / "missing" / "samples.png"), "does not exist")


def test_weights_of_another_variant_are_refused(concrete_run, vae_run, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(concrete_run, mixed)
    shutil.copy(vae_run / "model.safetensors", mixed / "model.safetensors")
    _refused(_zoo("sample", mixed), "'vae'", "'concrete'")


@pytest.mark.parametrize("missing", ["run", "weights"])
def test_incomplete_run_directory_is_refused(vae_run, tmp_path, missing):
    target = tmp_path / "run"
    if missing == "weights":
        shutil.copytree(vae_run, target)
        (target / "model.safetensors").unlink()
    _refused(_zoo("sample", target), str(target))
