"""`tiny-mlp`: a small fully connected autoencoder, written as a cmnist-zoo plugin.

This module stays light (no torch) so that `zoo list` is quick; the network lives in `net.py` and is imported only
when a model is built.
"""

from __future__ import annotations

from pydantic import Field

from cmnist_zoo import Variant, hookimpl
from cmnist_zoo.config import StrictModel


class TinyMlpConfig(StrictModel):
    code_dim: int = Field(16, ge=1, le=1024, description="size of the code")
    hidden: int = Field(256, ge=1, le=8192, description="units of the hidden layer on each side")


def build(config: TinyMlpConfig):
    from zoo_example_plugin.net import TinyMlpAutoencoder

    return TinyMlpAutoencoder(config)


@hookimpl
def register_variants(register):
    register(Variant(
        name="tiny-mlp",
        description="example plugin: a small MLP autoencoder (4096-256-16)",
        config=TinyMlpConfig,
        build=build,
    ))
