"""New images from a trained model's prior, for `zoo sample`.

Codes of a standard normal prior (and of the fitted Gaussian below) come from the runtime's seeded `draw_latents`,
the draw the ONNX runtime and the web page share, so one seed gives the same images from PyTorch, ONNX and the page.
A model without a prior (its sample_codes raises NoPriorError) is sampled from a diagonal Gaussian fitted to the codes
of its training images instead, and a conditional model with `class_mixture_components > 0` from a Gaussian mixture
per character fitted to them (cmnist_zoo.class_mixture); either is said on stderr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cmnist_zoo.charset import NUM_CLASSES
from cmnist_zoo.errors import NoPriorError, ZooError
from cmnist_zoo.exporters.runtime import draw_latents
from cmnist_zoo.pictures import save_grid
from cmnist_zoo.sample_grid import (ROW_LENGTH, Samples, check_output, default_output, describe,
                                     parse_class)


class FittedGaussian:
    """A diagonal Gaussian fitted to codes: a stand-in prior for models that have none."""

    def __init__(self, codes: torch.Tensor):
        self.count = len(codes)
        self.mean = codes.mean(0)
        self.std = codes.std(0) if len(codes) > 1 else torch.zeros_like(self.mean)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return self.mean + self.std * torch.from_numpy(draw_latents(n, len(self.mean), seed))


def prior_codes(model, n: int, seed: int, fit_prior=None) -> tuple[torch.Tensor, FittedGaussian | None]:
    """`n` codes from the model's prior, or from the Gaussian `fit_prior()` returns when it has none (then returned
    too, so callers can say so); without `fit_prior` such a model raises NoPriorError."""
    if model.standard_normal_prior:
        return torch.from_numpy(draw_latents(n, model.latent_dim, seed)), None
    try:
        return model.sample_codes(n, torch.Generator().manual_seed(seed)), None
    except NoPriorError:
        if fit_prior is None:
            raise
        prior = fit_prior()
        return prior.sample(n, seed), prior


def sample_latents(model, labels: np.ndarray, seed: int, fit_prior=None, mixture=None) -> tuple[torch.Tensor, str]:
    """Codes for images of class indices `labels` (ignored by unconditional models) and a note on where they came
    from when not from the model's own prior: from `mixture` (a ClassMixture) when given, else see prior_codes."""
    if mixture is not None:
        return torch.from_numpy(mixture.draw(labels, seed)), ""
    latents, prior = prior_codes(model, len(labels), seed, fit_prior)
    if prior is None:
        return latents, ""
    return latents, (f"note: the model has no prior; sampling from a diagonal Gaussian fitted to the codes of its "
                     f"{prior.count} training images")


def draw(model, n: int, code: int | None, seed: int, fit_prior=None, mixture=None) -> Samples:
    """`n` images of character `code`; of every character (n of each) for a conditional model without a code; else
    `n` images. `fit_prior()` returns a FittedGaussian, asked for only when the model has no prior of its own;
    `mixture`, a ClassMixture, replaces the prior when given."""
    if model.num_classes and code is None:
        codes = np.repeat(np.arange(1, NUM_CLASSES + 1), n)
        per_row = n
    else:
        codes = np.full(n, code or 0)
        per_row = min(n, ROW_LENGTH)
    latents, note = sample_latents(model, np.maximum(codes - 1, 0), seed, fit_prior, mixture)
    labels = torch.from_numpy(codes - 1) if model.num_classes else None
    with torch.no_grad():
        images = model.generate(latents, labels)[:, 0].cpu().numpy()
    return Samples(images, codes, per_row, note)


def fit_training_codes(run, data: str | None) -> FittedGaussian:
    """Encode a run's training images and fit a diagonal Gaussian to their codes."""
    from cmnist_zoo.splits import make_split
    from cmnist_zoo.training import load_run_data, map_batches

    dataset = load_run_data(run.config, data, quiet=True)
    indices = make_split(dataset, run.config["train"]["split"], run.config["train"]["seed"]).train
    return FittedGaussian(torch.from_numpy(map_batches(run.model.encode, dataset.images[indices],
                                                       dataset.labels[indices])))


def run_mixture(run, data: str | None = None, dataset=None, split=None):
    """The run's fitted class mixture and a note saying so, for models that sample from one; else (None, "")."""
    if not run.model.class_mixture_components:
        return None, ""
    from cmnist_zoo import class_mixture

    mixture, fitted_on = class_mixture.for_run(run, data, dataset, split)
    return mixture, f"note: codes come from {class_mixture.describe(mixture, fitted_on)}, not from the N(0, I) prior"


def sample_run(run_dir: Path, n: int, label: str | None, seed: int, out: Path | None = None,
               data: str | None = None) -> tuple[Path, Samples]:
    """Draw from a run's model and save the grid; returns where it went and the samples (whose note, if any, is for
    the user)."""
    from cmnist_zoo.runs import load_run

    if n < 1:
        raise ZooError(f"--n must be at least 1 (got {n})")
    if out is not None:
        check_output(Path(out))
    run = load_run(run_dir)
    code = parse_class(label, run.model.num_classes, f"{run_dir} (a {run.variant!r} run)")
    mixture, note = run_mixture(run, data)
    samples = draw(run.model, n, code, seed, lambda: fit_training_codes(run, data), mixture)
    samples.note = samples.note or note
    path = Path(out) if out else default_output(run_dir, code, seed)
    save_grid(path, samples.images, samples.per_row, f"{run.variant}: {describe(code, run.model.num_classes)}, "
              f"seed {seed}", samples.row_titles())
    return path, samples
