"""`cvae`: a conditional VAE on the conv backbone; sampling with a chosen character draws it in new hands."""

from __future__ import annotations

from pydantic import Field

from cmnist_zoo import Variant, hookimpl
from cmnist_zoo.config import StrictModel
from cmnist_zoo.plugins.settings import ConvWidths, widths_field


class CvaeConfig(StrictModel):
    code_dim: int = Field(16, ge=1, le=4096, description="size of the Gaussian code; small, so the class carries "
                                                        "the character and the code the hand")
    class_dim: int = Field(32, ge=1, le=1024, description="size of the learned class embedding fed to the decoder")
    widths: ConvWidths = widths_field()
    beta: float = Field(0.3, ge=0, le=1000, description="weight of the KL term at the end of training (1: the "
                                                       "ELBO; below 1 the code keeps more of the hand)")
    kl_warmup: float = Field(0.5, ge=0, le=1, description="fraction of training over which the KL weight moves "
                                                          "linearly from kl_start to beta (0: beta throughout)")
    kl_start: float = Field(1.0, ge=0, le=1000, description="KL weight when training starts, if kl_warmup > 0 "
                                                            "(above beta: the decoder learns the character from the "
                                                            "label first, while the code is expensive)")
    sample_components: int = Field(20, ge=0, le=256, description="Gaussian components per character of the density "
                                                                 "fitted to the training codes after training, "
                                                                 "which samples are drawn from (0: the N(0, I) "
                                                                 "prior)")


def build(config: CvaeConfig):
    from cmnist_zoo.plugins.cvae_net import ConditionalVAE

    return ConditionalVAE(config)


@hookimpl
def register_variants(register):
    register(Variant(
        name="cvae",
        description="conditional VAE: class embedding and per-block FiLM in the decoder, 16-dim code",
        config=CvaeConfig,
        build=build,
    ))
