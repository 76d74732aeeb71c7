"""The network of the `concrete` variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmnist_zoo.model import Autoencoder
from cmnist_zoo.plugins.backbone import conv_decoder, conv_encoder, feature_size


def reconstruction_loss(logits: torch.Tensor, images: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction error summed over pixels, averaged over the batch."""
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) - images) ** 2
    return per_pixel.flatten(1).sum(1).mean()


class ConcreteAutoencoder(Autoencoder):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.latent_dim = config.code_dim
        widths = tuple(config.widths)
        self.encoder = nn.Sequential(conv_encoder(widths), nn.Linear(feature_size(widths), config.code_dim))
        self.decoder = nn.Sequential(nn.Linear(config.code_dim, feature_size(widths)), nn.LeakyReLU(0.1),
                                     conv_decoder(widths))

    def encode(self, images, labels=None):
        return self.encoder(images)

    def decode(self, codes, labels=None):
        return self.decoder(codes)

    def training_loss(self, images, labels, progress):
        loss = reconstruction_loss(self.decode(self.encode(images)), images, self.config.loss)
        return {"loss": loss}
