"""What a plugin registers: a named variant, its settings model and a lazy model factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pydantic import BaseModel

if TYPE_CHECKING:  # torch stays out of listing paths
    from cmnist_zoo.model import Autoencoder


@dataclass(frozen=True)
class Variant:
    """A variant as a plugin describes it.

    `build` receives a validated instance of `config` and returns an `Autoencoder`; it should import torch-heavy
    modules itself so that listing variants never builds or imports a network. `train_defaults` are training
    settings (batch_size, lr, ...) this variant trains best with, in place of the zoo's; a user's own win.
    """

    name: str
    description: str
    config: type[BaseModel]
    build: Callable[[BaseModel], "Autoencoder"]
    train_defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredVariant:
    """A variant plus where it came from, as the registry knows it."""

    variant: Variant
    plugin: str
    distribution: str
    version: str

    @property
    def name(self) -> str:
        return self.variant.name
