"""Training settings as pydantic models, and the one place that turns validation errors into plain messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["StrictModel", "TrainSettings", "ValidationError", "describe_errors", "validate"]

from cmnist_zoo.errors import ZooError


MAX_TRAIN_SEED = 2**32 - 1


class StrictModel(BaseModel):
    """Base for every settings model: unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainSettings(StrictModel):
    """How a variant is trained; the same for every variant."""

    epochs: int = Field(20, ge=1, le=10_000, description="passes over the training images")
    batch_size: int = Field(64, ge=2, le=65_536,
                            description="images per optimiser step (batch norm needs 2 or more)")
    lr: float = Field(2e-3, gt=0, le=1.0, description="peak Adam learning rate")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine: the learning rate falls from lr to 0 over the run; constant: it stays at lr")
    seed: int = Field(0, ge=0, le=MAX_TRAIN_SEED,
                      description="seeds the split, the initial weights and the batch order")
    split: Literal["writer", "image"] = Field(
        "writer", description="'writer': 70/15/15 of the writers; 'image': the study's random 70/30 of the images")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto picks CUDA when present")


def describe_errors(error: ValidationError, where: str) -> str:
    """One line per problem, naming the field by its dotted path."""
    lines = []
    for item in error.errors():
        field_path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown setting {field_path!r}")
        else:
            lines.append(f"{where}: {field_path}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


def validate(model: type[BaseModel], values: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ZooError(describe_errors(exc, where)) from None


def read_json_file(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object from a file, with a clear message when it is missing or malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ZooError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read {what} {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZooError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ZooError(f"{what} {path} must hold a JSON object")
    return data


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """Parse `key.sub=value` from --set; the value is read as JSON when it can be, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ZooError(f"--set {text!r}: expected key=value, e.g. --set epochs=5 or --set model.loss=mse")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def merge_settings(file_values: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply --set assignments on top of a config file's values (nested dictionaries for dotted keys)."""
    merged = json.loads(json.dumps(file_values))
    for text in assignments:
        path, value = parse_assignment(text)
        target = merged
        for part in path[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise ZooError(f"--set {text!r}: {part!r} is not a group of settings")
            target = node
        target[path[-1]] = value
    return merged
