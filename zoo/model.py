"""The interface every variant's network implements, so one trainer, evaluator and exporter serve them all."""

from __future__ import annotations

import torch
from torch import nn

from cmnist_zoo.errors import NoPriorError  # noqa: F401  (raised by sample_codes; importable from here too)


class Autoencoder(nn.Module):
    """Base class for variant networks.

    Images are float tensors [B, 1, 64, 64] in [0, 1]; `labels` are class indices 0..14, used only by conditional
    variants (`num_classes > 0`). `decode` returns logits; `reconstruct` and exporters apply the sigmoid.
    """

    latent_dim: int = 0
    num_classes: int = 0
    # True when the prior is N(0, I): the zoo then draws the codes itself, with the seeded generator that the ONNX
    # runtime and the web page share, so one seed gives the same images everywhere.
    standard_normal_prior: bool = False
    # Above 0 (conditional models only): `zoo sample`, evaluation and exports draw codes from a Gaussian mixture with
    # this many components per class, fitted to the training codes after training (cmnist_zoo.class_mixture), in place
    # of the prior.
    class_mixture_components: int = 0

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The code of each image; for probabilistic encoders the mean, never a random draw."""
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the image for each code."""
        raise NotImplementedError

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; "loss" is what is minimised. `progress` runs from 0 to 1 over training."""
        raise NotImplementedError

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes drawn from the model's prior; models without one raise NoPriorError."""
        raise NoPriorError(f"{type(self).__name__} has no prior to sample from")

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(images, labels), labels))

    @torch.no_grad()
    def generate(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for the given codes (and labels)."""
        return torch.sigmoid(self.decode(codes, labels))
