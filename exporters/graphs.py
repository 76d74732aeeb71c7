"""The two graphs an export holds, written once for every variant through the Autoencoder interface.

Nothing random goes inside a graph: the decoder maps latents to images and the encoder returns `model.encode`, the
mean for probabilistic encoders; the runtime draws any noise itself. The graphs are made by torch.onnx.export with
the batch dimension declared dynamic (see EXPORTERS for which exporter and why); the export then proves the batch
free by running the saved file at several batch sizes (see parity.py).
"""

from __future__ import annotations

import contextlib
import inspect
import io
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


def fixed_batch(graph: onnx.ModelProto) -> list[str]:
    """The inputs and outputs whose batch dimension the graph fixes to a number."""
    return [value.name for value in [*graph.graph.input, *graph.graph.output]
            if value.type.tensor_type.shape.dim[0].HasField("dim_value")]


def _torch_export(graph: nn.Module, inputs: dict[str, torch.Tensor], output: str, opset: int) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic_shapes = {arg: {0: batch} for arg in list(inspect.signature(graph.forward).parameters)[:len(inputs)]}
    # exported here rather than by torch.onnx.export, whose fallbacks would quietly fix the batch instead of failing
    program = torch.export.export(graph, tuple(inputs.values()), dynamic_shapes=dynamic_shapes, strict=False)
    return torch.onnx.export(program, (), dynamo=True, opset_version=opset, input_names=list(inputs),
                             output_names=[output], optimize=True, verbose=False).model_proto


def _torchscript_export(graph: nn.Module, inputs: dict[str, torch.Tensor], output: str,
                        opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(graph, tuple(inputs.values()), buffer, dynamo=False, opset_version=opset,
                      input_names=list(inputs), output_names=[output],
                      dynamic_axes={name: {0: "batch"} for name in [*inputs, output]})
    return onnx.load_from_string(buffer.getvalue())


# The TorchScript tracer first (torch.onnx.export(dynamo=False)): with torch 2.13 it keeps the batch free for every
# built-in variant and takes under a second, where the torch.export-based exporter takes 4-17 s a graph here and
# fixes the batch of `cvae` (whose code turns the batch size into a Python number with len(x), which torch.export
# specialises but a trace never records). The tracer is deprecated in torch 2.13, so torch.export is the fallback for
# the day it goes or for models it cannot trace. Whichever made the graph, parity proves its batch free.
EXPORTERS = {"torchscript": _torchscript_export, "torch.export": _torch_export}


def to_onnx(model, part: str, opset: int, variant: str) -> tuple[onnx.ModelProto, str]:
    """The part of a model as an fp32 ONNX graph with a dynamic batch dimension, and the exporter that made it."""
    graph, inputs, output = graph_for(model, part), example_inputs(model, part), output_name(part)
    failures = []
    for name, export in EXPORTERS.items():
        try:
            with _quiet_exporter(), torch.no_grad():
                exported = export(graph, inputs, output, opset)
        except Exception as exc:  # the exporters raise many kinds; each means "not this way"
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            failures.append(f"{name}: {type(exc).__name__}: {detail[:300]}")
            continue
        fixed = fixed_batch(exported)
        if not fixed:
            return exported, name
        failures.append(f"{name} fixed the batch of {', '.join(fixed)} to {EXAMPLE_BATCH} (does the model turn the "
                        "batch size into a Python number, e.g. with len(x)? x.shape[0] keeps it free)")
    raise ZooError(f"could not export the {part} of variant {variant!r} to ONNX opset {opset} with a free batch "
                   f"dimension: {'; '.join(failures)}")
