"""Weights and resumable training state in safetensors files, with JSON metadata instead of pickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cmnist_zoo.errors import ZooError
from cmnist_zoo.runs import atomic_write

WEIGHTS_FORMAT = "cmnist-zoo-weights/1"


def _tensors(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_weights(model: torch.nn.Module, path: Path, variant: str) -> None:
    meta = {"format": WEIGHTS_FORMAT, "variant": variant}
    atomic_write(path, lambda p: save_file(_tensors(model.state_dict()), str(p), metadata=meta))


def _open(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path} is not a readable safetensors file ({exc})") from None


def _check_variant(meta: dict[str, str], path: Path, variant: str) -> None:
    saved = meta.get("variant")
    if saved is None:
        raise ZooError(f"{path} was not written by cmnist-zoo (no variant in its metadata)")
    if saved != variant:
        raise ZooError(f"{path} holds weights of variant {saved!r}, but the run is a {variant!r} run; "
                       "it belongs to another run directory")


def _load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, variant: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
            f"shape differs for {', '.join(wrong[:3])}" if wrong else "") if part)
        raise ZooError(f"{path} does not fit a {variant!r} model with this run's settings ({detail})")
    model.load_state_dict(tensors)


def load_weights(model: torch.nn.Module, path: Path, variant: str) -> None:
    tensors, meta = _open(path)
    _check_variant(meta, path, variant)
    _load_state(model, tensors, path, variant)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, variant: str,
                    progress: dict[str, Any]) -> None:
    """Everything needed to continue training exactly: weights, optimiser state, RNG state and progress."""
    tensors = _tensors(model.state_dict(), "model.")
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": WEIGHTS_FORMAT, "variant": variant, "progress": json.dumps(progress),
            "optimizer": json.dumps({"param_groups": opt_state["param_groups"], "scalars": scalars})}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    variant: str) -> dict[str, Any]:
    """Restore a checkpoint in place and return its progress record."""
    tensors, meta = _open(path)
    _check_variant(meta, path, variant)
    try:
        progress = json.loads(meta["progress"])
        opt_meta = json.loads(meta["optimizer"])
    except (KeyError, json.JSONDecodeError):
        raise ZooError(f"{path} is not a cmnist-zoo training checkpoint") from None
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _load_state(model, model_state, path, variant)
    try:  # a file edited by hand or written by something else fails here, not deep inside torch
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for index, values in opt_meta["scalars"].items():
            state.setdefault(int(index), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise ZooError(f"{path}: its optimiser or random-number state is damaged ({type(exc).__name__}: {exc}); "
                       "it cannot be resumed") from None
    return progress
