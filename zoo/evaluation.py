"""Honest test-set figures for a run, beside PCA with as many components as the code and an all-black prediction.

These images are mostly black, so raw MSE flatters any model: NMSE divides it by the MSE of predicting all black,
which is what a useful model must beat by a wide margin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.metrics import structural_similarity

from cmnist_zoo.runs import EVAL, load_run, write_json
from cmnist_zoo.splits import make_split
from cmnist_zoo.training import load_run_data, map_batches

_EPS = 1e-6


def image_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """MSE, NMSE, BCE (mean per pixel) and SSIM of [N, 64, 64] predictions in [0, 1] against targets in [0, 1]."""
    mse = float(np.mean((predictions - targets) ** 2))
    black = float(np.mean(targets ** 2))
    p = np.clip(predictions, _EPS, 1 - _EPS)
    bce = float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    ssim = float(np.mean([structural_similarity(t, q, data_range=1.0) for t, q in zip(targets, predictions)]))
    return {"mse": mse, "nmse": mse / black, "bce": bce, "ssim": ssim}


def pca_reconstruct(train: np.ndarray, test: np.ndarray, components: int, seed: int = 0) -> np.ndarray:
    """Fit PCA with `components` axes on the training images and reconstruct the test images, clipped to [0, 1]."""
    torch.manual_seed(seed)
    x = torch.from_numpy(train.reshape(len(train), -1))
    mean = x.mean(0)
    components = min(components, *x.shape)
    _, _, v = torch.pca_lowrank(x, q=min(components + 16, *x.shape), center=True, niter=6)
    axes = v[:, :components]
    t = torch.from_numpy(test.reshape(len(test), -1)) - mean
    recon = t @ axes @ axes.T + mean
    return recon.clamp(0, 1).reshape(test.shape).numpy()


def reconstruct_all(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return map_batches(lambda x, y: model.reconstruct(x, y)[:, 0], images, labels)


def evaluate_run(run_dir: Path, data: str | None = None, quiet: bool = False, classifier: bool = True
                 ) -> dict[str, Any]:
    """Evaluate a run's best weights on its test split and write eval.json beside them.

    With `classifier`, the reference classifier of the run's data and split (trained once, then cached) also judges
    the reconstructions and, for models that can sample, the samples; see cmnist_zoo.classifier."""
    run = load_run(run_dir)
    dataset = load_run_data(run.config, data, quiet)
    split = make_split(dataset, run.config["train"]["split"], run.config["train"]["seed"])
    test = dataset.images[split.test].astype(np.float32) / 255.0
    train = dataset.images[split.train].astype(np.float32) / 255.0
    reconstructions = reconstruct_all(run.model, dataset.images[split.test], dataset.labels[split.test])
    model_metrics = image_metrics(test, reconstructions)
    extra = getattr(run.model, "evaluation_metrics", None)
    if extra is not None:
        model_metrics.update(extra(torch.from_numpy(test[:, None]), torch.from_numpy(dataset.labels[split.test])))
    k = run.model.latent_dim
    pca_reconstructions = pca_reconstruct(train, test, k, run.config["train"]["seed"])
    pca_metrics = image_metrics(test, pca_reconstructions)
    black_metrics = image_metrics(test, np.zeros_like(test))
    report = {
        "run": str(run.directory),
        "variant": run.variant,
        "data": {"source": dataset.source, "hash": dataset.source_hash},
        "split": run.config["train"]["split"],
        "test_images": int(len(split.test)),
        "model": model_metrics,
        f"pca_{k}": pca_metrics,
        "all_black": black_metrics,
        "nmse_ratio_to_pca": model_metrics["nmse"] / pca_metrics["nmse"],
    }
    if classifier:
        from cmnist_zoo.classifier import get_classifier, judge_model
        from cmnist_zoo.sampling import fit_training_codes, run_mixture

        reference = get_classifier(dataset, split, quiet=quiet)
        judged = {"reconstruction": reconstructions, f"pca_{k}": pca_reconstructions, "all_black": np.zeros_like(test)}
        mixture, _ = run_mixture(run, data, dataset, split)
        report["classifier"] = judge_model(reference, run.model, dataset.images[split.test],
                                           dataset.labels[split.test], judged, lambda: fit_training_codes(run, data),
                                           mixture)
    write_json(Path(run_dir) / EVAL, report)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The figures as a small Markdown table."""
    rows = [(report["variant"], report["model"])]
    rows += [(key.replace("_", "-").upper() if key.startswith("pca") else "all black", report[key])
             for key in report if key.startswith("pca_") or key == "all_black"]
    lines = [f"test images: {report['test_images']} ({report['split']} split, data {report['data']['source']})", "",
             "| model | MSE | NMSE | BCE | SSIM |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {m['mse']:.5f} | {m['nmse']:.4f} | {m['bce']:.4f} | {m['ssim']:.4f} |" for name, m in rows]
    extra = {k: v for k, v in report["model"].items() if k not in {"mse", "nmse", "bce", "ssim"}}
    lines += ["", f"NMSE / PCA NMSE: {report['nmse_ratio_to_pca']:.3f}"]
    lines += [f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}" for key, value in extra.items()]
    if "classifier" in report:
        lines += ["", *_classifier_lines(report["classifier"])]
    return "\n".join(lines)


def _classifier_lines(figures: dict[str, Any]) -> list[str]:
    recognised = ", ".join(f"{key[:-len('_accuracy')].replace('_', ' ').replace('pca ', 'PCA-')} {value:.1%}"
                           for key, value in figures.items()
                           if key.endswith("_accuracy") and key != "test_accuracy" and not key.endswith("sample_accuracy"))
    lines = [f"reference classifier (trained on {figures['trained_on_images']} images of the training writers): "
             f"{figures['test_accuracy']:.1%} right on the real test images",
             f"recognised by it: {recognised}"]
    if isinstance(figures["samples"], str):
        return lines + [f"samples: {figures['samples']}"]
    asked = (f"{figures['sample_accuracy']:.1%} recognised as the character asked for; "
             if "sample_accuracy" in figures else "")
    sampler = "" if figures["sampler"] == "prior" else f"; {figures['sampler']}"
    lines.append(f"samples ({figures['samples']}{sampler}): {asked}Fréchet distance to the test images "
                 f"{figures['frechet_distance']:.2f} (training images: {figures['frechet_train_to_test']:.2f})")
    if "prior_frechet_distance" in figures:
        asked = (f"{figures['prior_sample_accuracy']:.1%} recognised; " if "prior_sample_accuracy" in figures else "")
        lines.append(f"samples from the N(0, I) prior instead, for comparison: {asked}Fréchet distance "
                     f"{figures['prior_frechet_distance']:.2f}")
    return lines
