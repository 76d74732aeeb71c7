"""The `vae` and `cvae` variants: mean codes, the KL schedule, class conditioning, pictures and likelihood figures."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from cmnist_zoo.cli import cli
from cmnist_zoo.errors import ZooError
from cmnist_zoo.models import build_model
from cmnist_zoo.pictures import CODE_MAP, INTERPOLATION, SAMPLES
from cmnist_zoo.testing import synthetic_batch


def _eval_model(variant: str, **settings):
    torch.manual_seed(0)
    model, _ = build_model(variant, settings)
    return model.eval()


@pytest.mark.parametrize("variant", ["vae", "cvae"])
def test_encode_gives_the_mean_unless_a_sample_is_asked_for(variant):
    model = _eval_model(variant)
    images, labels = synthetic_batch()
    with torch.no_grad():
        mean = model.encode(images, labels)
        assert torch.equal(mean, model.encode(images, labels))
        drawn = model.encode(images, labels, sample=True, generator=torch.Generator().manual_seed(3))
        again = model.encode(images, labels, sample=True, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(drawn, mean)
    assert torch.equal(drawn, again)


def test_vae_defaults_are_the_issue_s():
    model = _eval_model("vae")
    assert model.latent_dim == 64 and model.num_classes == 0
    assert model.config.beta == 1.0 and model.config.kl_warmup == 0.0


def test_kl_warmup_rises_linearly_to_beta():
    model = _eval_model("vae", kl_warmup=0.4, beta=2.0).train()
    images, labels = synthetic_batch()
    with torch.no_grad():
        start, halfway, late = (model.training_loss(images, labels, progress) for progress in (0.0, 0.2, 0.9))
    assert float(start["loss"]) == pytest.approx(float(start["reconstruction"]), rel=1e-6)
    assert float(halfway["loss"]) == pytest.approx(float(halfway["reconstruction"] + 1.0 * halfway["kl"]), rel=1e-6)
    assert float(late["loss"]) == pytest.approx(float(late["reconstruction"] + 2.0 * late["kl"]), rel=1e-6)
    assert float(late["kl"]) > 0


def test_kl_start_above_beta_anneals_down_to_it():
    model = _eval_model("cvae", kl_warmup=0.5, kl_start=1.0, beta=0.2).train()
    assert [model.kl_weight(p) for p in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([1.0, 0.6, 0.2, 0.2])


def test_cvae_is_conditional_and_refuses_missing_labels():
    model = _eval_model("cvae")
    assert model.num_classes == 15
    images, _ = synthetic_batch()
    with pytest.raises(ZooError, match="label"):
        model.encode(images)
    with pytest.raises(ZooError, match="label"):
        model.decode(torch.zeros(2, model.latent_dim))


def test_cvae_decoder_takes_the_class_at_every_block():
    """The class reaches the decoder at its input and as a per-class scale and shift after each block, so changing
    only those per-class weights changes the image."""
    model = _eval_model("cvae")
    codes = torch.zeros(2, model.latent_dim)
    labels = torch.tensor([0, 7])
    with torch.no_grad():
        before = model.decode(codes, labels)
        for film in model.decoder.films:
            film.weight[7].normal_()
        after = model.decode(codes, labels)
    assert torch.equal(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_interpolation_runs_between_two_characters_of_two_writers(tiny_data):
    from cmnist_zoo.data import load_dataset
    from cmnist_zoo.pictures import interpolation_ends
    from cmnist_zoo.splits import make_split

    dataset = load_dataset(tiny_data, quiet=True)
    test = make_split(dataset, "image", 0).test
    first, second = (test[i] for i in interpolation_ends(dataset, test))
    assert dataset.codes[first] != dataset.codes[second]
    assert dataset.suites[first] != dataset.suites[second]


@pytest.mark.parametrize("fixture", ["vae_run", "cvae_run"])
def test_runs_draw_samples_an_interpolation_and_a_code_map(fixture, request):
    run_dir = request.getfixturevalue(fixture)
    for name in (SAMPLES, INTERPOLATION, CODE_MAP):
        assert (run_dir / name).stat().st_size > 1000, name


def test_evaluate_reports_the_elbo_and_an_importance_weighted_bound(vae_run):
    run_dir = vae_run
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--quiet", "--no-classifier"])
    assert result.exit_code == 0, result.output
    model = json.loads((run_dir / "eval.json").read_text())["model"]
    assert model["neg_elbo_nats"] == pytest.approx(model["elbo_reconstruction_nats"] + model["elbo_kl_nats"])
    assert model["elbo_kl_nats"] > 0
    # the k = 64 bound is tighter than the ELBO, and bits per pixel are nats per image over 4096 ln 2
    assert 0 < model["nll_iw64_nats"] < model["neg_elbo_nats"]
    assert model["nll_iw64_bpp"] == pytest.approx(model["nll_iw64_nats"] / (4096 * math.log(2)))
    assert "nll_iw64_nats" in result.output


def test_cvae_likelihood_bounds_are_consistent_and_repeatable(cvae_run):
    from cmnist_zoo.runs import load_run

    model = load_run(cvae_run).model
    images, labels = synthetic_batch()
    figures = model.evaluation_metrics(images[:6], labels[:6])
    assert figures["neg_elbo_nats"] == pytest.approx(figures["elbo_reconstruction_nats"] + figures["elbo_kl_nats"])
    assert figures["nll_iw64_nats"] < figures["neg_elbo_nats"]
    assert model.evaluation_metrics(images[:6], labels[:6]) == figures  # seeded: the same figures every time
