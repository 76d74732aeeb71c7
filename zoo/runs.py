"""The run directory: what a training run writes, and loading it back with clear errors when something is off.

Weights and checkpoints are safetensors (never pickles); settings and metrics are JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cmnist_zoo.errors import ZooError

CONFIG = "config.json"
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
RUN_FORMAT = "cmnist-zoo-run/1"
REQUIRED_KEYS = ("variant", "train", "train.split", "train.seed", "data", "data.source", "data.hash")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file under the real name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks: it names the weights an export or a fitted prior belongs to."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8"))


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config.json of a run, checked to be one of ours."""
    from cmnist_zoo.config import read_json_file

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ZooError(f"{run_dir} is a file, not a run directory (the folder `zoo train --out` wrote)")
    if not run_dir.is_dir():
        raise ZooError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG).exists():
        raise ZooError(f"{run_dir} is not a complete run: {CONFIG} is missing")
    config = read_json_file(run_dir / CONFIG, "run config")
    if config.get("format") != RUN_FORMAT:
        raise ZooError(f"{run_dir / CONFIG} is not a cmnist-zoo run config (format {config.get('format')!r})")
    for dotted in REQUIRED_KEYS:  # checked here so evaluate, sample and export never meet a bare KeyError
        node: Any = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise ZooError(f"{run_dir / CONFIG} lacks {dotted!r}; it was damaged or edited by hand "
                           "(train the run again, or restore the file)")
    return config


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records; a torn last line (the process was killed mid-append) is that epoch unrecorded."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = [(no, line) for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    records = []
    for index, (no, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            if index == len(lines) - 1:
                break
            raise ZooError(f"{path} line {no} is not a metrics record; the file is damaged (fix or remove the line)")
        records.append(record)
    return records


@dataclass
class LoadedRun:
    """A trained model with the settings it was trained with."""

    directory: Path
    config: dict[str, Any]
    model: Any  # an Autoencoder

    @property
    def variant(self) -> str:
        return self.config["variant"]


def load_run(run_dir: Path, weights: str = MODEL, device: str = "cpu") -> LoadedRun:
    """Rebuild a run's model from its config and load its weights, refusing weights of another variant."""
    from cmnist_zoo.checkpoints import load_weights
    from cmnist_zoo.models import build_model

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if not (run_dir / weights).exists():
        raise ZooError(f"{run_dir} is not a complete run: {weights} is missing (train it, or resume it with "
                       f"`zoo train --resume {run_dir}`)")
    model, _ = build_model(config["variant"], config.get("model", {}), where=str(run_dir / CONFIG))
    load_weights(model, run_dir / weights, config["variant"])
    model.to(device).eval()
    return LoadedRun(run_dir, config, model)
