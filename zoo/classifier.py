"""A reference classifier of the 15 characters, to judge how much of a character survives a model's code.

It is trained once per data set, split kind and seed, on that split's training writers only, so a run's test writers
are never in its training set, and only on real images (never on reconstructions or samples), so it cannot learn a
model's quirks. Its accuracy on the real test images is recorded with its weights and beside every figure it gives.
Features of its penultimate layer give a Fréchet distance between real and generated images: the FID recipe, with a
network that knows these characters instead of Inception.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from cmnist_zoo.charset import NUM_CLASSES
from cmnist_zoo.data import Dataset, cache_dir
from cmnist_zoo.runs import atomic_write
from cmnist_zoo.splits import Split

FORMAT = "cmnist-zoo-classifier/1"
FEATURES = 256
EPOCHS = 8
MAX_BATCH = 128
MIN_BATCH = 32
LR = 3e-3
WEIGHT_DECAY = 5e-4
LABEL_SMOOTHING = 0.1
WARMUP = 0.05  # share of the steps over which the learning rate rises before its cosine decay
# Random affine jitter of the training images, about what separates one writer's hand from another's.
MAX_ROTATION = math.radians(10)
MAX_SCALE = 0.10
MAX_SHEAR = 0.10
MAX_SHIFT = 4 / 32  # 4 pixels, in grid_sample's [-1, 1] coordinates
EVAL_BATCH = 512


def _conv(in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True)]


class CharacterClassifier(nn.Module):
    """Image [B, 1, 64, 64] in [0, 1] -> logits [B, 15].

    Strided convolutions bring the image to 16x16 before the wide layers, which keeps training within a few minutes on
    two CPU cores; two dropout layers and the training-time jitter stand in for the writers it has not seen.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            *_conv(1, 32, stride=2, kernel=5),  # 32x32
            *_conv(32, 64, stride=2),  # 16x16
            *_conv(64, 64), nn.MaxPool2d(2),  # 8x8
            *_conv(64, 128), nn.MaxPool2d(2),  # 4x4
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 4 * 4, FEATURES), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, NUM_CLASSES))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@dataclass
class ReferenceClassifier:
    """The trained network, where it is cached, and how it did on the real test images when it was trained."""

    network: CharacterClassifier
    path: Path
    metadata: dict[str, str]

    @property
    def test_accuracy(self) -> float:
        return float(self.metadata["test_accuracy"])

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return embed(self.network, images)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.embed(images)[0] == labels))


@torch.no_grad()
def embed(network: CharacterClassifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class indices [N] and penultimate features [N, FEATURES] of images [N, 64, 64] (uint8, or floats in
    [0, 1])."""
    network.eval()
    predictions, features = [], []
    for start in range(0, len(images), EVAL_BATCH):
        f = network.features(_as_input(images[start:start + EVAL_BATCH]))
        predictions.append(network.head(f).argmax(1).numpy())
        features.append(f.numpy())
    if not predictions:
        return np.zeros(0, np.int64), np.zeros((0, FEATURES), np.float32)
    return np.concatenate(predictions), np.concatenate(features)


def _as_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last)


def classifier_path(dataset: Dataset, split: Split, epochs: int = EPOCHS) -> Path:
    """One file per data content, split kind and seed (and training length): a classifier never saw the test
    writers of the split it judges."""
    content = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset.source_hash)[:40]
    return cache_dir() / f"classifier-v1-{content}-{split.kind}-s{split.seed}-e{epochs}.safetensors"


def get_classifier(dataset: Dataset, split: Split, *, epochs: int = EPOCHS, quiet: bool = False
                   ) -> ReferenceClassifier:
    """The reference classifier for this data and split, trained (once, then cached) when none is cached."""
    path = classifier_path(dataset, split, epochs)
    loaded = _load(path)
    if loaded is not None:
        return loaded
    if not quiet:
        print(f"training the reference classifier once for this data and split (cached in {path})",
              file=sys.stderr)
    network, metadata = train_classifier(dataset, split, epochs, quiet)
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))
    except OSError as exc:
        print(f"warning: could not cache the reference classifier in {path}: {exc}", file=sys.stderr)
    return ReferenceClassifier(network.eval(), path, metadata)


def _load(path: Path) -> ReferenceClassifier | None:
    """The cached classifier, or None when there is none or it is damaged (then it is trained again)."""
    if not path.exists():
        return None
    network = CharacterClassifier()
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if metadata.get("format") != FORMAT:
            return None
        network.load_state_dict(tensors)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None
    return ReferenceClassifier(network.to(memory_format=torch.channels_last).eval(), path, metadata)


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random small rotation, scaling, shear and shift of each image."""
    n = len(images)

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle, scale, shear = uniform(MAX_ROTATION), 1 + uniform(MAX_SCALE), uniform(MAX_SHEAR)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, uniform(MAX_SHIFT)], 1),
                         torch.stack([sin, cos, uniform(MAX_SHIFT)], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def batch_size(train_images: int) -> int:
    """At most MAX_BATCH, but small enough for 32 steps an epoch where the data allows: a small data set still gets
    enough optimiser steps to learn something in the same number of epochs."""
    return int(np.clip(train_images // 32, MIN_BATCH, MAX_BATCH))


def _schedule(step: int, total: int) -> float:
    warm = max(1, round(total * WARMUP))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@torch.no_grad()
def _settle_batch_norm(network: CharacterClassifier, images: torch.Tensor) -> None:
    """Recompute the batch-norm statistics as plain averages over the unjittered training images.

    The running averages kept during training still carry their initial variance of 1 after a short run, which
    swamps the tiny variance of these mostly black images, and they describe jittered images rather than real ones.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches
    network.train()
    for start in range(0, len(images), EVAL_BATCH):
        network.body(_as_input(images[start:start + EVAL_BATCH].numpy()))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def train_classifier(dataset: Dataset, split: Split, epochs: int = EPOCHS, quiet: bool = False
                     ) -> tuple[CharacterClassifier, dict[str, str]]:
    """Train on the split's training writers; returns the network and the metadata its file keeps."""
    from tqdm import tqdm

    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(split.seed)
        generator = torch.Generator().manual_seed(split.seed)
        network = CharacterClassifier().to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(network.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        batch = batch_size(len(split.train))
        steps_per_epoch = max(1, len(split.train) // batch)
        total = epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _schedule(step, total))
        images = torch.from_numpy(dataset.images[split.train])
        labels = torch.from_numpy(dataset.labels[split.train])
        bar = tqdm(total=total, desc="reference classifier", unit="batch", leave=False, file=sys.stderr,
                   disable=True if quiet else None)
        network.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            for step in range(steps_per_epoch):
                chunk = order[step * batch:(step + 1) * batch]
                x = _jitter(_as_input(images[chunk].numpy()), generator)
                loss = F.cross_entropy(network(x), labels[chunk], label_smoothing=LABEL_SMOOTHING)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        _settle_batch_norm(network, images)
    test_predictions, test_features = embed(network, dataset.images[split.test])
    val_predictions = embed(network, dataset.images[split.val])[0]
    # What a generator that drew exactly the training writers' images would score against the test writers, with as
    # many images as the samples a model is judged on (the distance grows as the sets shrink).
    floor_picks = np.random.default_rng(split.seed).choice(split.train, min(len(split.train), len(split.test)),
                                                           replace=False)
    floor = frechet_distance(embed(network, dataset.images[floor_picks])[1], test_features)
    metadata = {
        "format": FORMAT,
        "data_hash": dataset.source_hash,
        "split": split.kind,
        "seed": str(split.seed),
        "epochs": str(epochs),
        "train_images": str(len(split.train)),
        "val_accuracy": f"{np.mean(val_predictions == dataset.labels[split.val]):.6f}",
        "test_accuracy": f"{np.mean(test_predictions == dataset.labels[split.test]):.6f}",
        "frechet_train_to_test": f"{floor:.6f}",
    }
    return network, metadata


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors [N, D].

    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), with the trace of the square root taken from the eigenvalues
    of S_a^1/2 S_b S_a^1/2, which is symmetric, so no general matrix square root is needed.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sum(np.sqrt(np.clip(cross, 0, None))))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


NO_PRIOR_SAMPLER = "diagonal Gaussian fitted to the training codes, as the model has no prior"
MIXTURE_SAMPLER = "Gaussian mixture per character fitted to the training codes"


@torch.no_grad()
def draw_samples(model, labels: np.ndarray, seed: int = 0, fit_prior=None, batch: int = EVAL_BATCH,
                 mixture=None) -> tuple[np.ndarray, str]:
    """Images [N, 64, 64] in [0, 1], one per label (used by conditional models only), and where their codes came
    from: `mixture` (a fitted ClassMixture) when given, else the model's prior, or for a model without one the
    Gaussian `fit_prior()` returns, as `zoo sample` does (see cmnist_zoo.sampling); without `fit_prior` such a model
    raises NoPriorError."""
    from cmnist_zoo.sampling import prior_codes

    if mixture is not None:
        codes, sampler = torch.from_numpy(mixture.draw(labels, seed)), MIXTURE_SAMPLER
    else:
        codes, fitted = prior_codes(model, len(labels), seed, fit_prior)
        sampler = "prior" if fitted is None else NO_PRIOR_SAMPLER
    out = []
    for start in range(0, len(labels), batch):
        wanted = torch.from_numpy(labels[start:start + batch]) if model.num_classes else None
        out.append(model.generate(codes[start:start + batch], wanted)[:, 0].cpu().numpy())
    return (np.concatenate(out) if out else np.zeros((0, 64, 64), np.float32)), sampler


def judge_model(reference: ReferenceClassifier, model, test_images: np.ndarray, test_labels: np.ndarray,
                reconstructions: dict[str, np.ndarray], fit_prior=None, mixture=None) -> dict[str, float | int | str]:
    """The classifier's figures for one model: its own accuracy on the real test images, how much of each set of
    reconstructions it still recognises, and for the model's samples (as many as test images, drawn for the test
    labels so conditional models show the same mix of characters) the Fréchet distance to the test images and, for
    conditional models, the share recognised as the character asked for. Models without a prior are sampled through
    `fit_prior` (see draw_samples), and skipped without it. Samples come from `mixture` when given; the prior's own
    samples are then judged too, under "prior_" keys, to show what the fit buys."""
    from cmnist_zoo.errors import NoPriorError

    predictions, real_features = reference.embed(test_images)
    figures: dict[str, float | int | str] = {
        "weights": str(reference.path),
        "trained_on_images": int(reference.metadata["train_images"]),
        "test_accuracy": float(np.mean(predictions == test_labels)),
    }
    for name, images in reconstructions.items():
        figures[f"{name}_accuracy"] = reference.accuracy(images, test_labels)
    try:
        samples, sampler = draw_samples(model, test_labels, fit_prior=fit_prior, mixture=mixture)
    except NoPriorError as exc:
        figures["samples"] = f"none ({exc})"
        return figures
    figures["samples"] = len(samples)
    figures["sampler"] = sampler
    figures.update(_judge_samples(reference, model, samples, test_labels, real_features))
    figures["frechet_train_to_test"] = float(reference.metadata["frechet_train_to_test"])
    if mixture is not None and model.standard_normal_prior:
        from_prior, _ = draw_samples(model, test_labels)
        judged = _judge_samples(reference, model, from_prior, test_labels, real_features)
        figures.update({f"prior_{key}": value for key, value in judged.items()})
    return figures


def _judge_samples(reference: ReferenceClassifier, model, samples: np.ndarray, labels: np.ndarray,
                   real_features: np.ndarray) -> dict[str, float]:
    predictions, features = reference.embed(samples)
    figures = {"sample_accuracy": float(np.mean(predictions == labels))} if model.num_classes else {}
    figures["frechet_distance"] = frechet_distance(features, real_features)
    return figures
