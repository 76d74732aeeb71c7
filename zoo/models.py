"""Creates any registered variant's network by name, with its settings validated against the variant's config."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cmnist_zoo.config import validate
from cmnist_zoo.errors import ZooError
from cmnist_zoo.registry import get_variant


def resolve_model_config(variant_name: str, values: dict[str, Any] | None, where: str = "model settings") -> BaseModel:
    variant = get_variant(variant_name).variant
    return validate(variant.config, values or {}, f"{where} (variant {variant_name!r})")


def build_model(variant_name: str, values: dict[str, Any] | None = None, where: str = "model settings"):
    """Returns (model, validated config) for a variant; the timm-style `create_model` of the zoo."""
    from cmnist_zoo.model import Autoencoder

    config = resolve_model_config(variant_name, values, where)
    try:
        model = get_variant(variant_name).variant.build(config)
    except ZooError:
        raise
    except Exception as exc:  # settings the config allowed but the network cannot take are the settings' fault
        raise ZooError(f"variant {variant_name!r} could not build its network from {where}: "
                       f"{type(exc).__name__}: {exc}") from None
    if not isinstance(model, Autoencoder):
        raise ZooError(f"variant {variant_name!r} built a {type(model).__name__}, not a cmnist_zoo.model.Autoencoder")
    return model, config
