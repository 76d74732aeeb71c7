"""The network of `tiny-mlp`: flatten, one hidden layer, a code; and back."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from cmnist_zoo.model import Autoencoder

PIXELS = 64 * 64


class TinyMlpAutoencoder(Autoencoder):
    def __init__(self, config):
        super().__init__()
        self.latent_dim = config.code_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, config.hidden), nn.ReLU(),
                                     nn.Linear(config.hidden, config.code_dim))
        self.decoder = nn.Sequential(nn.Linear(config.code_dim, config.hidden), nn.ReLU(),
                                     nn.Linear(config.hidden, PIXELS), nn.Unflatten(1, (1, 64, 64)))

    def encode(self, images, labels=None):
        return self.encoder(images)

    def decode(self, codes, labels=None):
        return self.decoder(codes)  # logits; the zoo applies the sigmoid

    def training_loss(self, images, labels, progress):
        logits = self.decode(self.encode(images))
        per_image = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1)
        return {"loss": per_image.mean()}
