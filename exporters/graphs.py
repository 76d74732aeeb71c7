"""The two graphs an export holds, written once for every variant through the Autoencoder interface.

Nothing random goes inside a graph: the decoder maps latents to images and the encoder returns `model.encode`, the
mean for probabilistic encoders; the runtime draws any noise itself. The graphs are traced with the torch.export-based
exporter (`torch.onnx.export(dynamo=True)`, the default of torch >= 2.9; the TorchScript one is deprecated there) with
the batch dimension declared dynamic; the export then proves it at several batch sizes (see parity.py).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import onnx
import torch
from torch import nn

from cmnist_zoo.errors import ZooError
from cmnist_zoo.exporters.runtime import CODE_OUTPUT, IMAGE_INPUT, IMAGE_OUTPUT, LABEL_INPUT, LATENT_INPUT

PARTS = ("decoder", "encoder")
# Traced at a batch size none of the checks use, so a batch fixed inside the graph cannot go unnoticed.
EXAMPLE_BATCH = 2
IMAGE_SHAPE = (1, 64, 64)


class DecoderGraph(nn.Module):
    """latent [B, D] (and label [B] int64 for conditional models) -> image [B, 1, 64, 64] in [0, 1]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latent, label=None):
        return torch.sigmoid(self.model.decode(latent, label))


class EncoderGraph(nn.Module):
    """image [B, 1, 64, 64] in [0, 1] (and label [B] int64 for conditional models) -> code [B, D]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image, label=None):
        return self.model.encode(image, label)


def graph_for(model, part: str) -> nn.Module:
    return (DecoderGraph if part == "decoder" else EncoderGraph)(model).eval()


def input_names(model, part: str) -> list[str]:
    first = LATENT_INPUT if part == "decoder" else IMAGE_INPUT
    return [first, LABEL_INPUT] if model.num_classes > 0 else [first]


def output_name(part: str) -> str:
    return IMAGE_OUTPUT if part == "decoder" else CODE_OUTPUT


def example_inputs(model, part: str, batch: int = EXAMPLE_BATCH) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    first = (torch.randn(batch, model.latent_dim, generator=generator) if part == "decoder"
             else torch.rand(batch, *IMAGE_SHAPE, generator=generator))
    inputs = {input_names(model, part)[0]: first}
    if model.num_classes > 0:
        inputs[LABEL_INPUT] = torch.randint(0, model.num_classes, (batch,), generator=generator)
    return inputs


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's deprecation warnings and notes about optional packages say nothing to a zoo user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def to_onnx(model, part: str, opset: int, variant: str) -> onnx.ModelProto:
    """The part of a model as an fp32 ONNX graph with a dynamic batch dimension."""
    graph = graph_for(model, part)
    inputs = example_inputs(model, part)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    forward_args = ("latent" if part == "decoder" else "image", "label")
    dynamic_shapes = {arg: {0: batch} for arg, _ in zip(forward_args, inputs)}
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(graph, tuple(inputs.values()), dynamo=True, opset_version=opset,
                                        input_names=list(inputs), output_names=[output_name(part)],
                                        dynamic_shapes=dynamic_shapes, optimize=True, verbose=False)
    except Exception as exc:  # torch.export raises many kinds; each means "this model cannot be traced as it is"
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ZooError(f"could not export the {part} of variant {variant!r} to ONNX opset {opset}: "
                       f"{type(exc).__name__}: {detail[:300]}") from None
    return program.model_proto
