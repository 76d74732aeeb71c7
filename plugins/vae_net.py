"""The network of the `vae` variant, and the Gaussian-code machinery (loss, prior, likelihood bounds) `cvae` shares.

Likelihood convention: pixels stay continuous in [0, 1] and each is scored as a Bernoulli with the decoder's
probability ("continuous BCE", as in the training loss). That is not a normalised density for non-binary pixels, so
the figures compare models on this data under this convention only; they are not the log-likelihood of binarised
images nor of 8-bit discretised ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cmnist_zoo.model import Autoencoder
from cmnist_zoo.plugins.backbone import conv_decoder, conv_encoder, feature_size

LOG_2PI = math.log(2 * math.pi)
IW_SAMPLES = 64
IW_DECODES_PER_BATCH = 512  # images decoded at once by the importance-weighted bound


def standard_normal(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) noise drawn on the generator's device (so a seed gives the same numbers anywhere), moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def bernoulli_log_likelihood(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of each image in nats under the continuous-BCE convention; shape [B]."""
    return -F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) of each code dimension; shape [B, D]."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)


class GaussianCodeAutoencoder(Autoencoder):
    """A diagonal Gaussian posterior over the code, a standard normal prior and Bernoulli logits out.

    Subclasses provide `posterior` (mean and log-variance) and `decode`; their config has code_dim, beta, kl_warmup
    and kl_start. Validation and test losses always use the full beta.
    """

    standard_normal_prior = True

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.latent_dim = config.code_dim

    def posterior(self, images: torch.Tensor, labels: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encode(self, images, labels=None, *, sample: bool = False, generator: torch.Generator | None = None):
        """The posterior mean; a draw from the posterior only when `sample` is asked for."""
        mean, logvar = self.posterior(images, labels)
        if not sample:
            return mean
        return mean + (0.5 * logvar).exp() * standard_normal(tuple(mean.shape), generator, mean)

    def kl_weight(self, progress: float) -> float:
        """beta, or during the first kl_warmup of training a straight line from kl_start to it."""
        warmup, beta = self.config.kl_warmup, self.config.beta
        if warmup <= 0:
            return beta
        return self.config.kl_start + (beta - self.config.kl_start) * min(1.0, progress / warmup)

    def training_loss(self, images, labels, progress):
        mean, logvar = self.posterior(images, labels)
        codes = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        reconstruction = -bernoulli_log_likelihood(self.decode(codes, labels), images).mean()
        kl = gaussian_kl(mean, logvar).sum(1).mean()
        return {"loss": reconstruction + self.kl_weight(progress) * kl, "reconstruction": reconstruction, "kl": kl}

    def sample_codes(self, n, generator=None):
        like = next(self.parameters())
        return standard_normal((n, self.latent_dim), generator, like)

    @torch.no_grad()
    def evaluation_metrics(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """The negative ELBO (and its reconstruction and KL parts) and the importance-weighted bound on -log p(x)
        with 64 posterior samples (Burda et al.), per image in nats and per pixel in bits, under the continuous-BCE
        convention of the module docstring; conditional models give bounds on -log p(x | class).

        The k samples of a batch go through the decoder together; the ELBO parts reuse the same draws, and a fixed
        seed makes the figures repeatable.
        """
        generator = torch.Generator().manual_seed(0)
        self.to(memory_format=torch.channels_last)  # as in training: the transposed convolutions run ~1.5x faster
        like = next(self.parameters())
        per_batch = max(1, IW_DECODES_PER_BATCH // IW_SAMPLES)
        reconstruction = kl = nll = 0.0
        for start in range(0, len(images), per_batch):
            x = images[start:start + per_batch].to(like).contiguous(memory_format=torch.channels_last)
            y = labels[start:start + per_batch].to(like.device)
            mean, logvar = self.posterior(x, y)
            noise = standard_normal((IW_SAMPLES, *mean.shape), generator, mean)
            codes = mean + (0.5 * logvar).exp() * noise  # [k, B, D]
            logits = self.decode(codes.flatten(0, 1), y.repeat(IW_SAMPLES))
            targets = x.reshape(1, len(x), -1).expand(IW_SAMPLES, -1, -1)
            log_px = -F.binary_cross_entropy_with_logits(logits.reshape(targets.shape), targets,
                                                         reduction="none").sum(-1)  # [k, B]
            log_prior = -0.5 * (codes.pow(2) + LOG_2PI).sum(-1)
            log_posterior = -0.5 * (noise.pow(2) + LOG_2PI + logvar).sum(-1)
            log_weights = log_px + log_prior - log_posterior
            bound = torch.logsumexp(log_weights, 0) - math.log(IW_SAMPLES)
            reconstruction += float(-log_px.mean(0).sum())
            kl += float(gaussian_kl(mean, logvar).sum())
            nll += float(-bound.sum())
        count = len(images)
        to_bits_per_pixel = 1.0 / (images[0].numel() * math.log(2))
        neg_elbo = (reconstruction + kl) / count
        return {
            "neg_elbo_nats": neg_elbo,
            "elbo_reconstruction_nats": reconstruction / count,
            "elbo_kl_nats": kl / count,
            "neg_elbo_bpp": neg_elbo * to_bits_per_pixel,
            f"nll_iw{IW_SAMPLES}_nats": nll / count,
            f"nll_iw{IW_SAMPLES}_bpp": nll / count * to_bits_per_pixel,
        }


class VariationalAutoencoder(GaussianCodeAutoencoder):
    def __init__(self, config):
        super().__init__(config)
        widths = tuple(config.widths)
        self.encoder = nn.Sequential(conv_encoder(widths), nn.Linear(feature_size(widths), 2 * config.code_dim))
        self.decoder = nn.Sequential(nn.Linear(config.code_dim, feature_size(widths)), nn.LeakyReLU(0.1),
                                     conv_decoder(widths))

    def posterior(self, images, labels=None):
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar

    def decode(self, codes, labels=None):
        return self.decoder(codes)
