"""The Gaussian mixture per character that `cvae` samples from: drawn as documented, fitted where each character's
codes lie, kept beside the weights and refitted when they change, and the same draw in PyTorch and ONNX."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cmnist_zoo import class_mixture
from cmnist_zoo.checkpoints import save_weights
from cmnist_zoo.cli import cli
from cmnist_zoo.exporters.export import export_run
from cmnist_zoo.exporters.runtime import ClassMixture, Decoder, seeded_normal, splitmix64
from cmnist_zoo.runs import EVAL, MODEL, load_run
from cmnist_zoo.sampling import sample_run


def test_a_draw_follows_the_documented_recipe():
    weights = np.array([[0.25, 0.75], [1.0, 0.0]])
    means = np.array([[[1.0, 2.0], [-3.0, 4.0]], [[10.0, 20.0], [0.0, 0.0]]])
    scales = np.array([[[[1.0, 0.0], [0.5, 2.0]], [[0.1, 0.0], [0.0, 0.1]]], [np.eye(2), np.eye(2)]])
    mixture = ClassMixture(weights, means, scales)
    classes, seed = np.array([0, 0, 0, 1, 0]), 42
    got = mixture.draw(classes, seed)
    noise = seeded_normal(5, 2, seed).astype(np.float64)
    for i, c in enumerate(classes):
        u = float(splitmix64(seed, np.array([2 * 5 * 2 + i]))[0] >> np.uint64(11)) * 2.0 ** -53
        k = 0 if c == 1 or u < 0.25 else 1
        expected = means[c, k] + scales[c, k] @ noise[i]
        np.testing.assert_allclose(got[i], expected.astype(np.float32), rtol=1e-6)
    assert got.dtype == np.float32
    assert np.array_equal(got, mixture.draw(classes, seed)) and not np.array_equal(got, mixture.draw(classes, 43))
    many = mixture.draw(np.zeros(4000, np.int64), 0)
    near_second = np.linalg.norm(many - means[0, 1], axis=1) < 1.0
    assert abs(near_second.mean() - 0.75) < 0.03  # the second component, weight 0.75, is narrow


def test_each_character_is_drawn_where_its_own_codes_lie():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 2, 4))  # three classes of two clusters each
    labels = np.repeat(np.arange(3), 200)
    codes = centres[labels, rng.integers(0, 2, 600)] + rng.normal(0, 0.3, (600, 4))
    codes = np.concatenate([codes, [[5.0, 5.0, 5.0, 5.0]]])  # class 3: one code; class 4: none
    labels = np.concatenate([labels, [3]])
    mixture = class_mixture.fit(codes, labels, num_classes=5, components=2)
    assert mixture.weights.shape == (5, 2) and np.allclose(mixture.weights.sum(1), 1)
    for c in range(3):
        drawn = mixture.draw(np.full(500, c), seed=c)
        nearest = np.linalg.norm(drawn[:, None, None] - centres[None], axis=-1).reshape(500, 6).argmin(1) // 2
        assert np.mean(nearest == c) > 0.99
    np.testing.assert_allclose(mixture.draw(np.full(10, 3), seed=0), 5.0, atol=0.1)
    pooled = mixture.draw(np.full(2000, 4), seed=0)
    assert np.abs(pooled.mean(0) - codes.mean(0)).max() < 2.0


def test_a_cvae_run_keeps_its_fit_and_refits_when_the_weights_change(cvae_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(cvae_run, run_dir)
    assert (run_dir / class_mixture.PRIOR_FILE).is_file(), "training fits the mixture for its samples picture"
    kept = class_mixture.load(run_dir)
    assert kept is not None
    mixture, fitted_on = kept
    assert mixture.classes == 15 and mixture.latent_dim == load_run(run_dir).model.latent_dim
    model = load_run(run_dir).model
    with torch.no_grad():  # as a resumed run would: new weights in the same folder
        for parameter in model.features.parameters():
            parameter.mul_(1.5)
    save_weights(model, run_dir / MODEL, "cvae")
    assert class_mixture.load(run_dir) is None, "a fit of other weights is not used"
    refitted, _ = class_mixture.for_run(load_run(run_dir))
    assert class_mixture.load(run_dir) is not None
    assert not np.allclose(refitted.means, mixture.means)
    (run_dir / class_mixture.PRIOR_FILE).write_bytes(b"damaged")
    assert class_mixture.load(run_dir) is None
    result = CliRunner().invoke(cli, ["sample", str(run_dir), "--label", "七", "--n", "3"])
    assert result.exit_code == 0, result.output
    assert "Gaussian mixture per character" in result.stderr and class_mixture.load(run_dir) is not None


def test_zoo_sample_and_the_exported_decoder_draw_the_same_sevens(cvae_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(cvae_run, run_dir)
    export_run(run_dir, tmp_path / "export", parts=["decoder"], precisions=["fp32"], batch_sizes=(1, 3),
               quiet=True)
    decoder = Decoder(tmp_path / "export" / "decoder.onnx")
    assert decoder.prior == "class_mixture" and decoder.metadata["prior_fitted_on"].endswith("training images")
    mixture, _ = class_mixture.load(run_dir)
    np.testing.assert_array_equal(decoder.mixture.means, mixture.means)
    _, samples = sample_run(run_dir, 6, "七", 5, tmp_path / "s.png")
    onnx_images = decoder.sample(6, "七", seed=5).astype(int)
    assert np.abs(onnx_images - np.rint(samples.images * 255).astype(int)).max() <= 1
    assert not np.array_equal(decoder.sample(6, "五", seed=5), decoder.sample(6, "七", seed=5))
    result = CliRunner().invoke(cli, ["sample", "--onnx", str(tmp_path / "export" / "decoder.onnx"), "--n", "2"])
    assert result.exit_code == 0 and "not from the N(0, I) prior" in result.stderr


def test_a_mixture_for_other_latents_is_refused_by_the_runtime(cvae_run, tmp_path):
    import onnx

    run_dir = tmp_path / "run"
    shutil.copytree(cvae_run, run_dir)
    export_run(run_dir, tmp_path / "export", parts=["decoder"], precisions=["fp32"], batch_sizes=(1,), quiet=True)
    path = tmp_path / "export" / "decoder.onnx"
    graph = onnx.load(str(path))
    for prop in graph.metadata_props:
        if prop.key == "prior_mixture":
            fields = json.loads(prop.value)
            fields["means"] = [[m[:-1] for m in per_class] for per_class in fields["means"]]
            prop.value = json.dumps(fields)
    onnx.save(graph, str(tmp_path / "bad.onnx"))
    from cmnist_zoo.exporters.runtime import RuntimeInputError

    with pytest.raises(RuntimeInputError, match="metadata is incomplete or damaged"):
        Decoder(tmp_path / "bad.onnx")


def test_evaluate_judges_mixture_and_prior_samples_side_by_side(cvae_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(cvae_run, run_dir)
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    figures = json.loads((run_dir / EVAL).read_text())["classifier"]
    assert figures["sampler"].startswith("Gaussian mixture per character")
    for key in ("sample_accuracy", "frechet_distance", "prior_sample_accuracy", "prior_frechet_distance"):
        assert 0 <= figures[key] and np.isfinite(figures[key])
    assert "N(0, I) prior instead, for comparison" in result.output
