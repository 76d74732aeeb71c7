"""`vae`: the study's convolutional backbone with a 64-dim diagonal Gaussian code and a standard normal prior."""

from __future__ import annotations

from pydantic import Field

from cmnist_zoo import Variant, hookimpl
from cmnist_zoo.config import StrictModel
from cmnist_zoo.plugins.settings import ConvWidths, widths_field


class VaeConfig(StrictModel):
    code_dim: int = Field(64, ge=1, le=4096, description="size of the Gaussian code")
    widths: ConvWidths = widths_field()
    beta: float = Field(1.0, ge=0, le=1000, description="weight of the KL term (1: the ELBO)")
    kl_warmup: float = Field(0.0, ge=0, le=1, description="fraction of training over which the KL weight moves "
                                                          "linearly from kl_start to beta (0: beta throughout)")
    kl_start: float = Field(0.0, ge=0, le=1000, description="KL weight when training starts, if kl_warmup > 0 "
                                                            "(below beta: a warm-up; above: an anneal)")


def build(config: VaeConfig):
    from cmnist_zoo.plugins.vae_net import VariationalAutoencoder

    return VariationalAutoencoder(config)


@hookimpl
def register_variants(register):
    register(Variant(
        name="vae",
        description="variational autoencoder on the conv backbone (64-dim Gaussian code, beta=1)",
        config=VaeConfig,
        build=build,
    ))
