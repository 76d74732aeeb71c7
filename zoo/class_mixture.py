"""A Gaussian mixture per character fitted to a run's training codes, drawn from in place of the N(0, I) prior.

A conditional VAE's prior samples land in regions of code space no training image reached (the "holes" of the
aggregate posterior) and come out as blurs of no character. Fitting a density to where the training codes really lie,
after training, and sampling from it is ex-post density estimation (Ghosh et al., "From Variational to Deterministic
Autoencoders", ICLR 2020, who fit a Gaussian mixture to the codes). Fitted per character, it draws codes the
decoder has learnt to draw that character from. Models opt in with `class_mixture_components > 0`.

The fit is kept beside the weights in RUN_DIR/prior.safetensors with the weights' SHA-256, and fitted again when the
weights change (a resumed run). The mixture is sampled with the runtime's ClassMixture.draw, so `zoo sample`, the
ONNX runtime and the web page draw the same latents for the same seed.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from cmnist_zoo.exporters.runtime import ClassMixture
from cmnist_zoo.runs import MODEL, atomic_write, sha256_of

PRIOR_FILE = "prior.safetensors"
FORMAT = "cmnist-zoo-class-mixture/1"
REGULARISATION = 1e-4  # added to each covariance's diagonal: codes of a few near-identical images stay drawable


def fit(codes: np.ndarray, labels: np.ndarray, num_classes: int, components: int, seed: int = 0) -> ClassMixture:
    """Full-covariance Gaussian mixtures, one per class, fitted by EM (scikit-learn) to codes [N, D] with class
    indices [N]; a class with fewer codes than components gets one component per two codes, and a class with no codes
    the mixture of all of them."""
    from sklearn.mixture import GaussianMixture

    codes = np.asarray(codes, np.float64)
    dim = codes.shape[1]
    weights = np.zeros((num_classes, components))
    means = np.zeros((num_classes, components, dim))
    scales = np.tile(np.eye(dim), (num_classes, components, 1, 1))
    for c in range(num_classes):
        own = codes[labels == c]
        if len(own) == 0:
            own = codes
        used = max(1, min(components, len(own) // 2))
        if len(own) < 2:  # one code: a Gaussian around it, as narrow as the regularisation
            weights[c, 0], means[c, 0] = 1.0, own[0]
            scales[c, 0] = np.sqrt(REGULARISATION) * np.eye(dim)
            continue
        with warnings.catch_warnings():  # EM's "did not converge" after max_iter: the fit is still usable
            warnings.simplefilter("ignore")
            mixture = GaussianMixture(used, covariance_type="full", reg_covar=REGULARISATION,
                                      random_state=seed, max_iter=200).fit(own)
        weights[c, :used] = mixture.weights_ / mixture.weights_.sum()
        means[c, :used] = mixture.means_
        scales[c, :used] = np.linalg.cholesky(mixture.covariances_)
    return ClassMixture(weights, means, scales)


def describe(mixture: ClassMixture, fitted_on: int | str) -> str:
    used = int((mixture.weights > 0).sum(1).max())
    return (f"a Gaussian mixture per character ({used} components, full covariance) fitted to the codes of its "
            f"{fitted_on} training images")


def load(run_dir: Path) -> tuple[ClassMixture, str] | None:
    """The mixture kept for the run's present weights and what it was fitted on, or None (none kept, kept for
    other weights, or damaged)."""
    path = Path(run_dir) / PRIOR_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in ("weights", "means", "scales")}
        if meta.get("format") != FORMAT or meta.get("model_sha256") != sha256_of(Path(run_dir) / MODEL):
            return None
        return ClassMixture(arrays["weights"], arrays["means"], arrays["scales"]), meta.get("fitted_on", "?")
    except (SafetensorError, OSError, ValueError, KeyError):
        return None


def save(run_dir: Path, mixture: ClassMixture, fitted_on: int) -> None:
    """Keep the fit beside the weights; a run folder that cannot be written only costs a refit next time."""
    arrays = {"weights": mixture.weights, "means": mixture.means, "scales": mixture.scales}
    meta = {"format": FORMAT, "model_sha256": sha256_of(Path(run_dir) / MODEL), "fitted_on": str(fitted_on)}
    try:
        atomic_write(Path(run_dir) / PRIOR_FILE, lambda p: save_file(arrays, str(p), metadata=meta))
    except OSError as exc:
        print(f"warning: could not keep the fitted prior in {run_dir}: {exc}", file=sys.stderr)


def for_run(run, data: str | None = None, dataset=None, split=None) -> tuple[ClassMixture, str]:
    """The run's mixture and how many images it was fitted on: the kept one, else fitted now (encoding the training
    images of the run's data, or of `dataset` and `split` when given) and kept."""
    kept = load(run.directory)
    if kept is not None:
        return kept
    from cmnist_zoo.splits import make_split
    from cmnist_zoo.training import load_run_data, map_batches

    if dataset is None:
        dataset = load_run_data(run.config, data, quiet=True)
    if split is None:
        split = make_split(dataset, run.config["train"]["split"], run.config["train"]["seed"])
    images, labels = dataset.images[split.train], dataset.labels[split.train]
    codes = map_batches(run.model.encode, images, labels)
    mixture = fit(codes, labels, run.model.num_classes, run.model.class_mixture_components,
                  run.config["train"]["seed"])
    save(run.directory, mixture, len(codes))
    return mixture, str(len(codes))
