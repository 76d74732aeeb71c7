"""Pictures a person would rather look at than read: reconstructions, loss curves, samples, interpolations, code maps.

Labels show each character's value (七 is 7) since the default plotting fonts have no CJK glyphs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmnist_zoo.charset import CHARACTERS, VALUES  # noqa: E402

RECONSTRUCTIONS = "reconstructions.png"
LOSS = "loss.png"
SAMPLES = "samples.png"
INTERPOLATION = "interpolation.png"
CODE_MAP = "codes.png"


def tile(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """Arrange [N, H, W] images (uint8 or [0, 1] floats) in a grid with dark grey gutters; returns uint8."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    n, h, w = images.shape
    rows = -(-n // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 40, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = image
    return grid


def label_text(code: int) -> str:
    return f"{VALUES[code - 1]:g}" if VALUES[code - 1] < 10_000 else f"1e{len(str(VALUES[code - 1])) - 1}"


def save_rows(path: Path, rows: list[np.ndarray], row_titles: list[str], title: str,
              col_titles: list[str] | None = None) -> None:
    """One figure of labelled rows of images, e.g. originals above their reconstructions."""
    cols = len(rows[0])
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.9, len(rows) * 1.0 + 0.5), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(row[c], cmap="gray", vmin=0, vmax=1 if row.dtype != np.uint8 else 255)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=8)
            if r == 0 and col_titles:
                ax.set_title(col_titles[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_loss_curves(path: Path, metrics: list[dict]) -> None:
    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m["train"]["loss"] for m in metrics], marker="o", label="train")
    ax.plot(epochs, [m["val"]["loss"] for m in metrics], marker="o", label="validation")
    ax.set_xlabel("epoch"), ax.set_ylabel("loss per image"), ax.set_title("training curves")
    ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_grid(path: Path, images: np.ndarray, cols: int, title: str, row_titles: list[str] | None = None) -> None:
    """A plain grid of images with an optional label per row."""
    grid = tile(images, cols)
    rows = -(-len(images) // cols)
    fig, ax = plt.subplots(figsize=(max(4, cols * 0.75), max(2, rows * 0.75) + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    if row_titles:
        step = grid.shape[0] / rows
        ax.set_yticks([step * (i + 0.5) for i in range(rows)], row_titles, fontsize=8)
    else:
        ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_code_map(path: Path, codes: np.ndarray, class_codes: np.ndarray, title: str) -> None:
    """Test codes projected to 2-D (the first two principal axes when the code is larger), coloured by character."""
    centred = codes - codes.mean(0)
    if codes.shape[1] > 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        points = centred @ vt[:2].T
    else:
        points = np.pad(centred, ((0, 0), (0, 2 - codes.shape[1])))
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20")
    for code in range(1, len(CHARACTERS) + 1):
        chosen = class_codes == code
        ax.scatter(points[chosen, 0], points[chosen, 1], s=4, color=cmap(code - 1), label=label_text(code))
    ax.legend(markerscale=3, fontsize=7, ncol=3, title="character (value)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def examples_per_class(class_codes: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The first image of each character among `indices`, in code order."""
    return np.array([indices[np.flatnonzero(class_codes[indices] == c)[0]]
                     for c in np.unique(class_codes[indices])])


def write_run_pictures(run_dir: Path, dataset, split) -> None:
    """Pictures of a finished run, drawn with its best weights."""
    import torch

    from cmnist_zoo.errors import NoPriorError
    from cmnist_zoo.runs import load_run, read_metrics
    from cmnist_zoo.training import as_batch

    run = load_run(run_dir)
    model = run.model
    picks = examples_per_class(dataset.codes, split.test)
    x = as_batch(torch.from_numpy(dataset.images[picks]), torch.device("cpu"))
    y = torch.from_numpy(dataset.labels[picks])
    recon = model.reconstruct(x, y)[:, 0].numpy()
    titles = [label_text(c) for c in dataset.codes[picks]]
    save_rows(run_dir / RECONSTRUCTIONS, [dataset.images[picks], recon], ["original", "reconstruction"],
              f"{run.variant}: test writers' images and their reconstructions", titles)
    save_loss_curves(run_dir / LOSS, read_metrics(run_dir))
    codes = _encode_all(model, dataset, split.test)
    save_code_map(run_dir / CODE_MAP, codes, dataset.codes[split.test], f"{run.variant}: test codes")
    from cmnist_zoo.sampling import run_mixture

    mixture, _ = run_mixture(run, dataset=dataset, split=split)
    try:
        write_sample_pictures(run_dir, model, run.variant, dataset, split, codes, mixture)
    except NoPriorError:
        pass  # deterministic autoencoders have nothing to sample


def _encode_all(model, dataset, indices: np.ndarray) -> np.ndarray:
    from cmnist_zoo.training import map_batches

    return map_batches(model.encode, dataset.images[indices], dataset.labels[indices])


def interpolation_ends(dataset, indices: np.ndarray) -> tuple[int, int]:
    """Positions in `indices` of two test images to interpolate between: the first, and another character by another
    writer when there is one (else another character); the middle image is often the first's character again."""
    first = 0
    other_code = dataset.codes[indices] != dataset.codes[indices[first]]
    other_writer = dataset.suites[indices] != dataset.suites[indices[first]]
    for candidates in (np.flatnonzero(other_code & other_writer), np.flatnonzero(other_code)):
        if len(candidates):
            return first, int(candidates[len(candidates) // 2])
    return first, len(indices) // 2


def write_sample_pictures(run_dir: Path, model, variant: str, dataset, split, codes: np.ndarray,
                          mixture=None) -> None:
    """For models with a prior: a grid of new samples (a row per character when conditional; from `mixture`, a fitted
    ClassMixture, when given) and an interpolation between the codes of two test images. Raises NoPriorError for
    models without a prior."""
    import torch

    from cmnist_zoo.sampling import draw

    samples = draw(model, 10 if model.num_classes else 60, None, seed=0, mixture=mixture)
    source = "the prior" if mixture is None else "the fitted class mixture"
    save_grid(run_dir / SAMPLES, samples.images, samples.per_row, f"{variant}: samples from {source}",
              samples.row_titles())
    ia, ib = interpolation_ends(dataset, split.test)
    a, b = split.test[ia], split.test[ib]
    steps = torch.linspace(0, 1, 10)[:, None]
    z = (1 - steps) * torch.from_numpy(codes[ia]) + steps * torch.from_numpy(codes[ib])
    labels = None
    if model.num_classes:
        labels = torch.tensor([dataset.labels[a]] * 5 + [dataset.labels[b]] * 5)
    strip = model.generate(z.float(), labels)[:, 0].numpy()
    strip = np.concatenate([dataset.images[[a]] / 255.0, strip, dataset.images[[b]] / 255.0])
    save_grid(run_dir / INTERPOLATION, strip, len(strip), f"{variant}: interpolation between two test images")
