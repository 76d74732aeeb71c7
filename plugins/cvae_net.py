"""The network of the `cvae` variant: a VAE whose encoder and decoder both know the character.

A plain CVAE on this backbone (class one-hot into the decoder's first layer, 64-dim code) learns to carry the character
in the code and ignores the class, so its prior samples are blurs of no particular character. Here the class is made
the cheapest route to the shape: the decoder gets a learned class embedding beside the code at its input and a
per-class scale and shift (FiLM) of the feature maps after every block, so the label gives the character for free.
The code still carries much of it, which is why sampling needs more than N(0, I).

Samples come from a Gaussian mixture per character fitted to the training codes (cmnist_zoo.class_mixture), not from
N(0, I). Measured on the real data (20 epochs, writer split, seed 0; the reference classifier judges): with N(0, I),
no setting tried got past 32 % of samples recognised as the character asked for (beta 1 throughout: faint blurs,
27.9 %; beta 0.3 or 0.1: sharper but the label half ignored; a KL weight annealed from 1 to 0.3: 29.2 %), and lowering
the prior's temperature made it worse, since the decoder draws the character from where the code lies as much as
from the label. The mixture puts codes where the training codes of that character are. Its samples are bounded by
how much the code keeps, so the defaults keep much (32 dimensions, beta 0.05, batch 32: 97 % of reconstructions
recognised; 16 dimensions kept 84 %), and the fit buys the rest: 20 components per character gave 90.6 % of samples
recognised and a Fréchet distance of 28 (N(0, I) samples of the same model: see benchmarks/README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmnist_zoo.errors import ZooError
from cmnist_zoo.plugins.backbone import conv_decoder, conv_encoder, feature_size
from cmnist_zoo.plugins.vae_net import GaussianCodeAutoencoder

NUM_CLASSES = 15


def _split_blocks(decoder: nn.Sequential) -> tuple[list[nn.Sequential], nn.Sequential]:
    """The backbone decoder cut after each BatchNorm (where FiLM goes), and its output layer."""
    blocks, current = [], []
    for layer in decoder:
        current.append(layer)
        if isinstance(layer, nn.BatchNorm2d):
            blocks.append(nn.Sequential(*current))
            current = []
    return blocks, nn.Sequential(*current)


class ClassConditionedDecoder(nn.Module):
    """Code and class -> image logits, with the class entering at the input and at every block."""

    def __init__(self, widths: tuple[int, ...], code_dim: int, class_dim: int, num_classes: int):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, class_dim)
        self.project = nn.Sequential(nn.Linear(code_dim + class_dim, feature_size(widths)), nn.LeakyReLU(0.1))
        blocks, self.output = _split_blocks(conv_decoder(widths))
        self.blocks = nn.ModuleList(blocks)
        channels = list(reversed(widths))[1:]
        self.films = nn.ModuleList(nn.Embedding(num_classes, 2 * c) for c in channels)
        for film in self.films:  # start as the identity so early training is that of the plain decoder
            nn.init.zeros_(film.weight)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([codes, self.embedding(labels)], dim=1))
        for block, film in zip(self.blocks, self.films):
            h = block(h)
            scale, shift = film(labels)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.output(h)


class ConditionalVAE(GaussianCodeAutoencoder):
    num_classes = NUM_CLASSES

    def __init__(self, config):
        super().__init__(config)
        self.class_mixture_components = config.sample_components
        widths = tuple(config.widths)
        self.features = conv_encoder(widths)
        self.head = nn.Linear(feature_size(widths) + NUM_CLASSES, 2 * config.code_dim)
        self.decoder = ClassConditionedDecoder(widths, config.code_dim, config.class_dim, NUM_CLASSES)

    def _checked(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        if labels is None or labels.shape != (batch,):
            raise ZooError(f"cvae needs one class label (0..{NUM_CLASSES - 1}) per image; got "
                           f"{None if labels is None else tuple(labels.shape)} for {batch} images")
        return labels.long()

    def posterior(self, images, labels=None):
        labels = self._checked(labels, len(images))
        one_hot = F.one_hot(labels, NUM_CLASSES).to(images.dtype)
        mean, logvar = self.head(torch.cat([self.features(images), one_hot], dim=1)).chunk(2, dim=1)
        return mean, logvar

    def decode(self, codes, labels=None):
        return self.decoder(codes, self._checked(labels, len(codes)))
