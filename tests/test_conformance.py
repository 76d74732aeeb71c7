"""Every installed variant passes the conformance check, and the check catches the mistakes it is there for."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import BaseModel
from torch import nn

from cmnist_zoo import Variant, hookimpl
from cmnist_zoo.config import StrictModel
from cmnist_zoo.model import Autoencoder
from cmnist_zoo.registry import get_registry
from cmnist_zoo.testing import check_variant

from conftest import installed_variants


@pytest.mark.parametrize("name", installed_variants())
def test_installed_variant_conforms(name):
    check_variant(name)


class _Settings(StrictModel):
    code_dim: int = 4


class _LooseSettings(BaseModel):  # ignores unknown keys: a typo would pass unnoticed
    code_dim: int = 4


class _UntypedSettings(StrictModel):  # takes anything: nonsense reaches the network
    code_dim: Any = 4


class _Tiny(Autoencoder):
    def __init__(self, config):
        super().__init__()
        self.latent_dim = config.code_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, config.code_dim))
        self.decoder = nn.Sequential(nn.Linear(config.code_dim, 64 * 64), nn.Unflatten(1, (1, 64, 64)))

    def encode(self, images, labels=None):
        return self.encoder(images)

    def decode(self, codes, labels=None):
        return self.decoder(codes)

    def training_loss(self, images, labels, progress):
        return {"loss": nn.functional.binary_cross_entropy_with_logits(self.decode(self.encode(images)), images)}


class _RandomCodes(_Tiny):
    def encode(self, images, labels=None):
        return self.encoder(images) + torch.randn(len(images), self.latent_dim)


class _BatchDependent(_Tiny):
    def encode(self, images, labels=None):
        codes = self.encoder(images)
        return codes - codes.mean(0)


class _UnsavedState(_Tiny):
    def __init__(self, config):
        super().__init__(config)
        self.shift = torch.randn(config.code_dim)  # neither parameter nor buffer: lost on reload

    def encode(self, images, labels=None):
        return self.encoder(images) + self.shift


class _WrongShape(_Tiny):
    def encode(self, images, labels=None):
        return self.encoder(images)[:, :, None]

    def decode(self, codes, labels=None):
        return self.decoder(codes.flatten(1))


def _register(network: type[Autoencoder], settings: type[BaseModel] = _Settings) -> str:
    class Plugin:
        @hookimpl
        def register_variants(self, register):
            register(Variant(name="faulty", description="a variant with one mistake", config=settings,
                             build=network))

    get_registry().add_plugin(Plugin(), name="faulty-plugin")
    return "faulty"


def test_the_check_passes_a_correct_variant():
    check_variant(_register(_Tiny))


@pytest.mark.parametrize("network, settings, complaint", [
    (_Tiny, _LooseSettings, "unknown keys"),
    (_Tiny, _UntypedSettings, "bad setting 'code_dim'|'code_dim': .* were accepted"),
    (_RandomCodes, _Settings, "not a random draw"),
    (_BatchDependent, _Settings, "rest of its batch"),
    (_UnsavedState, _Settings, "reloading"),
    (_WrongShape, _Settings, "encode gave shape"),
])
def test_the_check_names_what_a_faulty_variant_gets_wrong(network, settings, complaint):
    with pytest.raises(AssertionError, match=complaint):
        check_variant(_register(network, settings))
