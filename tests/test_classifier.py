"""The reference classifier: trained once per data and split, cached, and reported by `zoo evaluate`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import linalg

from cmnist_zoo import classifier
from cmnist_zoo.cli import cli
from cmnist_zoo.data import load_dataset
from cmnist_zoo.evaluation import evaluate_run
from cmnist_zoo.runs import EVAL
from cmnist_zoo.splits import make_split

from conftest import TINY

CHANCE = 1 / 15


@pytest.fixture(scope="module")
def tiny_split():
    dataset = load_dataset(TINY, quiet=True)
    return dataset, make_split(dataset, "writer", 0)


def test_classifier_learns_the_characters_and_is_trained_only_once(tiny_split, monkeypatch, capsys):
    dataset, split = tiny_split
    reference = classifier.get_classifier(dataset, split)
    assert reference.path.exists()
    assert reference.test_accuracy > 4 * CHANCE, "it should recognise unseen writers' characters well above chance"
    assert reference.accuracy(dataset.images[split.test], dataset.labels[split.test]) == \
        pytest.approx(reference.test_accuracy, abs=1e-6)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded, not trained again")

    monkeypatch.setattr(classifier, "train_classifier", no_training)
    capsys.readouterr()
    again = classifier.get_classifier(dataset, split)
    assert "training the reference classifier" not in capsys.readouterr().err
    assert again.test_accuracy == reference.test_accuracy
    assert np.allclose(again.embed(dataset.images[:20])[1], reference.embed(dataset.images[:20])[1], atol=1e-5)


def test_each_split_gets_its_own_classifier(tiny_split):
    dataset, split = tiny_split
    paths = {classifier.classifier_path(dataset, s) for s in (split, make_split(dataset, "writer", 1),
                                                               make_split(dataset, "image", 0))}
    paths.add(classifier.classifier_path(dataclasses.replace(dataset, source_hash="other content"), split))
    assert len(paths) == 4, "another seed, split kind or data set must never reuse a classifier"


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5))
    b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 2.0
    mean_a, mean_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert classifier.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert classifier.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_evaluate_reports_what_the_classifier_recognises(concrete_run):
    report = evaluate_run(concrete_run, quiet=True)
    figures = json.loads((concrete_run / EVAL).read_text())["classifier"]
    assert figures == report["classifier"]
    assert figures["test_accuracy"] > 4 * CHANCE
    # PCA with 64 components keeps most of each tiny test image, so the character survives it
    assert figures["pca_64_accuracy"] > 2 * CHANCE
    assert 0 <= figures["reconstruction_accuracy"] <= 1
    # every all-black image gets the same class, and the test writers wrote each character equally often
    assert figures["all_black_accuracy"] == pytest.approx(CHANCE)
    # concrete has no prior: its samples come from a Gaussian fitted to its training codes, as in `zoo sample`
    assert figures["sampler"] != "prior" and figures["frechet_distance"] > 0
    assert "sample_accuracy" not in figures, "an unconditional model is not asked for any character"


class _GeneratorOfTrainingImages:
    """A stand-in conditional model whose "samples" are training images: of the character asked for, or, when
    `ignores_class`, always of the first character (the failure a plain CVAE shows)."""

    num_classes, latent_dim, standard_normal_prior = 15, 2, True

    def __init__(self, images, labels, ignores_class: bool):
        self.by_class = {c: images[labels == c] for c in range(15)}
        self.ignores_class = ignores_class

    def generate(self, codes, labels):
        import torch

        picks = [self.by_class[0 if self.ignores_class else int(c)][i % len(self.by_class[int(c)])]
                 for i, c in enumerate(labels)]
        return torch.from_numpy(np.stack(picks))[:, None].float() / 255


def test_conditional_samples_are_checked_against_the_character_asked_for(tiny_split):
    dataset, split = tiny_split
    reference = classifier.get_classifier(dataset, split)
    train_images, train_labels = dataset.images[split.train], dataset.labels[split.train]
    test_images, test_labels = dataset.images[split.test], dataset.labels[split.test]

    def judge(ignores_class):
        model = _GeneratorOfTrainingImages(train_images, train_labels, ignores_class)
        return classifier.judge_model(reference, model, test_images, test_labels, {})

    faithful, class_blind = judge(False), judge(True)
    assert faithful["sampler"] == "prior" and faithful["samples"] == len(split.test)
    assert faithful["sample_accuracy"] > 0.8
    assert class_blind["sample_accuracy"] < 2 * CHANCE
    # a generator stuck on one character is also far from the test images' mix of characters
    assert class_blind["frechet_distance"] > 2 * faithful["frechet_distance"]


def test_cli_shows_the_classifier_figures_and_can_skip_them(concrete_run):
    shown = CliRunner().invoke(cli, ["evaluate", str(concrete_run), "--quiet"])
    assert shown.exit_code == 0, shown.output
    assert "reference classifier" in shown.output and "Fréchet distance" in shown.output
    skipped = CliRunner().invoke(cli, ["evaluate", str(concrete_run), "--quiet", "--no-classifier"])
    assert skipped.exit_code == 0, skipped.output
    assert "reference classifier" not in skipped.output
    assert "classifier" not in json.loads((concrete_run / EVAL).read_text())
