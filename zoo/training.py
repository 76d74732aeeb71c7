"""The one trainer every variant shares: the variant supplies network and loss, the zoo the rest.

Each epoch ends with an atomic checkpoint (weights, optimiser and RNG state), so an interrupted run continues with
`zoo train --resume RUN_DIR` and, on the CPU, ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from cmnist_zoo import __version__
from cmnist_zoo.checkpoints import load_checkpoint, save_checkpoint, save_weights
from cmnist_zoo.config import TrainSettings, validate
from cmnist_zoo.data import Dataset, load_dataset
from cmnist_zoo.errors import ZooError
from cmnist_zoo.models import build_model, resolve_model_config
from cmnist_zoo.registry import get_variant
from cmnist_zoo.runs import (CHECKPOINT, CONFIG, METRICS, MODEL, RUN_FORMAT, atomic_write, read_metrics,
                            read_run_config, write_json)
from cmnist_zoo.splits import Split, make_split

EVAL_BATCH = 512


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once the last complete epoch is safely on disk."""

    def __init__(self, run_dir: Path, epoch: int):
        super().__init__(f"interrupted; epoch {epoch} is saved in {run_dir}; continue with "
                         f"`zoo train --resume {run_dir}`")
        self.run_dir, self.epoch = run_dir, epoch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ZooError(f"device {name!r} was asked for, but CUDA is not available here; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ZooError(f"device {name!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA "
                       "device(s), numbered from 0")
    return torch.device(name)


def as_batch(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, 64, 64] -> float [B, 1, 64, 64] in [0, 1], channels-last (faster convolutions on the CPU)."""
    batch = images.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def map_batches(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: np.ndarray, labels: np.ndarray,
                batch: int = EVAL_BATCH) -> np.ndarray:
    """step(x, y) over uint8 images and their labels in batches on the CPU (x as `as_batch` makes it), the outputs
    joined: for the codes, reconstructions and the like of thousands of images without holding them all as floats."""
    out = []
    for start in range(0, len(images), batch):
        x = as_batch(torch.from_numpy(images[start:start + batch]), torch.device("cpu"))
        out.append(step(x, torch.from_numpy(labels[start:start + batch])).numpy())
    return np.concatenate(out)


def versions() -> dict[str, str]:
    return {"cmnist_zoo": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


@dataclass
class Trainer:
    """Trains one run directory; create it with `start` or `resume`."""

    run_dir: Path
    config: dict[str, Any]
    settings: TrainSettings
    dataset: Dataset
    split: Split
    model: torch.nn.Module
    device: torch.device
    quiet: bool = False
    on_epoch_end: list[Callable[[int], None]] = field(default_factory=list)
    start_epoch: int = 0
    best_val: float = math.inf
    completed_epoch: int = 0

    def __post_init__(self):
        self.model.to(self.device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.settings.lr)
        self.images = torch.from_numpy(self.dataset.images)
        self.labels = torch.from_numpy(self.dataset.labels)

    @property
    def variant(self) -> str:
        return self.config["variant"]

    def _batches(self, indices: np.ndarray, size: int, shuffle_epoch: int | None):
        order = torch.from_numpy(indices)
        if shuffle_epoch is not None:
            generator = torch.Generator().manual_seed(self.settings.seed * 100_003 + shuffle_epoch)
            order = order[torch.randperm(len(order), generator=generator)]
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            if shuffle_epoch is not None and len(chunk) < 2:
                continue  # batch norm cannot train on a single image
            yield as_batch(self.images[chunk], self.device), self.labels[chunk].to(self.device)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total = math.ceil(len(self.split.train) / self.settings.batch_size)
        sums: dict[str, float] = {}
        seen = 0
        bar = tqdm(total=total, desc=f"epoch {epoch}/{self.settings.epochs}", unit="batch", leave=False,
                   disable=True if self.quiet else None, file=sys.stderr)
        for step, (x, y) in enumerate(self._batches(self.split.train, self.settings.batch_size, epoch)):
            progress = ((epoch - 1) + step / total) / self.settings.epochs
            self._set_learning_rate(progress)
            terms = self.model.training_loss(x, y, progress)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * len(x)
            seen += len(x)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / seen:.4g}")
        bar.close()
        return {k: v / max(seen, 1) for k, v in sums.items()}

    def _set_learning_rate(self, progress: float) -> None:
        """A pure function of progress, so a resumed run follows the same schedule with no scheduler state."""
        rate = self.settings.lr
        if self.settings.schedule == "cosine":
            rate *= 0.5 * (1 + math.cos(math.pi * progress))
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    @torch.no_grad()
    def evaluate_loss(self, indices: np.ndarray) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        for x, y in self._batches(indices, EVAL_BATCH, None):
            for key, value in self.model.training_loss(x, y, 1.0).items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(x)
        return {k: v / max(len(indices), 1) for k, v in sums.items()}

    def _record(self, entry: dict[str, Any]) -> None:
        with open(self.run_dir / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def fit(self) -> Path:
        """Train the remaining epochs; Ctrl-C keeps the last complete epoch and raises TrainingInterrupted."""
        self.completed_epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch + 1, self.settings.epochs + 1):
                began = time.perf_counter()
                train = self._train_epoch(epoch)
                val = self.evaluate_loss(self.split.val)
                seconds = time.perf_counter() - began
                self._record({"epoch": epoch, "train": train, "val": val, "seconds": round(seconds, 3)})
                if val["loss"] < self.best_val:
                    self.best_val = val["loss"]
                    save_weights(self.model, self.run_dir / MODEL, self.variant)
                save_checkpoint(self.run_dir / CHECKPOINT, self.model, self.optimizer, self.variant,
                                {"epoch": epoch, "best_val": self.best_val})
                self.completed_epoch = epoch
                if not self.quiet:
                    tqdm.write(f"epoch {epoch:>3}/{self.settings.epochs}  train {train['loss']:.4f}  "
                               f"val {val['loss']:.4f}  {seconds:.1f}s", file=sys.stderr)
                for callback in self.on_epoch_end:
                    callback(epoch)
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.run_dir, self.completed_epoch) from None
        from cmnist_zoo.pictures import write_run_pictures

        write_run_pictures(self.run_dir, self.dataset, self.split)
        return self.run_dir


def _default_run_dir(variant: str) -> Path:
    return Path("runs") / f"{variant}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def start(variant: str, data: str | None, train_values: dict[str, Any], model_values: dict[str, Any],
          out: Path | None = None, quiet: bool = False) -> Trainer:
    """Validate everything, load the data, create the run directory and its config.json."""
    registered = get_variant(variant)
    settings = validate(TrainSettings, {**registered.variant.train_defaults, **train_values}, "training settings")
    model_config = resolve_model_config(variant, model_values)  # refuse bad settings before any slow work
    run_dir = Path(out) if out else _default_run_dir(variant)
    if (run_dir / CONFIG).exists():
        raise ZooError(f"{run_dir} already holds a run; continue it with `zoo train --resume {run_dir}` "
                       "or choose another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise ZooError(f"--out {run_dir} is a file; the run needs a directory of its own")
    device = pick_device(settings.device)
    dataset = load_dataset(data, quiet=quiet)
    split = make_split(dataset, settings.split, settings.seed)
    torch.manual_seed(settings.seed)
    model, _ = build_model(variant, model_values)  # initial weights come from the seeded generator
    config = {
        "format": RUN_FORMAT,
        "variant": variant,
        "plugin": {"name": registered.plugin, "distribution": registered.distribution,
                   "version": registered.version},
        "model": model_config.model_dump(mode="json"),
        "train": settings.model_dump(mode="json"),
        "data": {"source": dataset.source, "hash": dataset.source_hash, "images": len(dataset)},
        "split": split.describe(dataset),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, config)
    return Trainer(run_dir, config, settings, dataset, split, model, device, quiet)


def load_run_data(config: dict[str, Any], data: str | None, quiet: bool = False) -> Dataset:
    """The data a run was trained on: from where it was then, or from --data, which must hold the same content."""
    source = data or config["data"]["source"]
    dataset = load_dataset(source, quiet=quiet)
    if dataset.source_hash != config["data"]["hash"]:
        raise ZooError(f"the data at {dataset.source} differs from the data this run was trained on "
                       f"({config['data']['source']}); pass --data with the same data set")
    return dataset


def resume(run_dir: Path, data: str | None = None, epochs: int | None = None, quiet: bool = False,
           device: str | None = None) -> Trainer:
    """Continue a run from its last complete epoch; config.json changes only once the resume is sure to go ahead.

    device may differ from the one the run was trained on (a CUDA run can continue on a CPU-only machine); it is not
    saved, as it says where a run goes on, not what it is.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise ZooError(f"{run_dir} has no {CHECKPOINT} to resume from; it stopped before its first epoch ended")
    overrides = {k: v for k, v in (("epochs", epochs), ("device", device)) if v is not None}
    settings = validate(TrainSettings, dict(config["train"], **overrides), f"training settings of {run_dir}")
    target = pick_device(settings.device)
    model, _ = build_model(config["variant"], config.get("model", {}), where=str(run_dir / CONFIG))
    dataset = load_run_data(config, data, quiet)
    split = make_split(dataset, settings.split, settings.seed)
    trainer = Trainer(run_dir, config, settings, dataset, split, model, target, quiet)
    progress = load_checkpoint(run_dir / CHECKPOINT, trainer.model, trainer.optimizer, config["variant"])
    trainer.start_epoch, trainer.best_val = progress["epoch"], progress["best_val"]
    if trainer.start_epoch >= settings.epochs:
        done = f"{trainer.start_epoch} epoch{'s' if trainer.start_epoch != 1 else ''}"
        raise ZooError(f"{run_dir} already finished {done}; pass --epochs N with N above "
                       f"{trainer.start_epoch} to train longer")
    kept = [m for m in read_metrics(run_dir) if m["epoch"] <= trainer.start_epoch]
    atomic_write(run_dir / METRICS, lambda p: p.write_text("".join(json.dumps(m) + "\n" for m in kept),
                                                            encoding="utf-8"))
    if settings.epochs != config["train"].get("epochs"):
        config["train"]["epochs"] = settings.epochs
        write_json(run_dir / CONFIG, config)
    return trainer
