"""`cvae`: a conditional VAE on the conv backbone; sampling with a chosen character draws it in new hands."""

from __future__ import annotations

from pydantic import Field

from cmnist_zoo import Variant, hookimpl
from cmnist_zoo.config import StrictModel
from cmnist_zoo.plugins.settings import ConvWidths, widths_field


class CvaeConfig(StrictModel):
    code_dim: int = Field(32, ge=1, le=4096, description="size of the Gaussian code (16 kept too little of the "
                                                        "strokes: 84 % of reconstructions recognised, against 97 %)")
    class_dim: int = Field(32, ge=1, le=1024, description="size of the learned class embedding fed to the decoder")
    widths: ConvWidths = widths_field()
    beta: float = Field(0.05, ge=0, le=1000, description="weight of the KL term at the end of training (1: the "
                                                        "ELBO; below 1 the code keeps more of the strokes, and the "
                                                        "fitted mixture, not N(0, I), is what samples come from)")
    kl_warmup: float = Field(0.0, ge=0, le=1, description="fraction of training over which the KL weight moves "
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
        description="conditional VAE: class embedding and per-block FiLM in the decoder, 32-dim code, samples from a "
                    "Gaussian mixture per character fitted to the training codes",
        config=CvaeConfig,
        build=build,
        train_defaults={"batch_size": 32},  # twice the steps in the same epochs: 97 % of reconstructions recognised
    ))
