"""`zoo export`: a run's decoder and encoder as self-contained ONNX files, each accepted only once it is proven.

Each file is written under a temporary name, checked (onnx.checker with full_check, strict shape inference, parity
with PyTorch at every batch size tried, see parity.py) and only then renamed to its real name, beside its report
PART[.PRECISION].parity.json. A file that fails any check is deleted, so nothing that failed can be taken for a good
export; when parity is what failed, its figures are kept as PART[.PRECISION].parity-failed.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cmnist_zoo import __version__
from cmnist_zoo.charset import CHARACTERS, CODES
from cmnist_zoo.errors import ZooError
from cmnist_zoo.exporters.graphs import IMAGE_SHAPE, PARTS, fixed_batch, graph_for, input_names, output_name, to_onnx
from cmnist_zoo.exporters.parity import BATCH_SIZES, TOLERANCES, InputSet, check_parity, describe_worst
from cmnist_zoo.exporters.precision import PRECISIONS, convert
from cmnist_zoo.exporters.runtime import (CLASS_MIXTURE, FITTED_GAUSSIAN, FORMAT, IMAGE_INPUT, LABEL_INPUT,
                                          LATENT_INPUT, STANDARD_NORMAL, RuntimeInputError, draw_latents,
                                          first_line, open_session)
from cmnist_zoo.errors import NoPriorError
from cmnist_zoo.runs import MODEL, load_run, sha256_of, write_json
from cmnist_zoo.splits import make_split
from cmnist_zoo.training import load_run_data

DEFAULT_OPSET = 18
MIN_OPSET = 13  # per-channel int8 needs it
SEED = 0  # random inputs, the order of the test images and the calibration images
CALIBRATION_IMAGES = 512
CHUNK = 64


class ParityFailed(ZooError):
    """An exported graph does not compute what the model computes; nothing was written under its name."""


@dataclass
class Exported:
    part: str
    precision: str
    path: Path
    report_path: Path
    report: dict


def file_names(part: str, precision: str) -> tuple[str, str, str]:
    """The graph, its report and its report after a failure: decoder.onnx, decoder.int8.onnx, ..."""
    stem = part if precision == "fp32" else f"{part}.{precision}"
    return f"{stem}.onnx", f"{stem}.parity.json", f"{stem}.parity-failed.json"


def prior_metadata(run, data: str | None) -> dict[str, str]:
    """How the runtime is to draw latents for this model: from the class mixture `zoo sample` uses, for models that
    sample from one; N(0, I) when that is its prior; for a model without one, the diagonal Gaussian fitted to its
    training codes that `zoo sample` uses; else not at all ("other")."""
    model = run.model
    if model.class_mixture_components:
        from cmnist_zoo import class_mixture

        mixture, fitted_on = class_mixture.for_run(run, data)
        return {"prior": CLASS_MIXTURE, "prior_mixture": mixture.to_json(),
                "prior_fitted_on": f"{fitted_on} training images",
                "prior_description": class_mixture.describe(mixture, fitted_on)}
    if model.standard_normal_prior:
        return {"prior": STANDARD_NORMAL}
    try:
        model.sample_codes(1, torch.Generator().manual_seed(SEED))
    except NoPriorError:
        from cmnist_zoo.sampling import fit_training_codes

        fitted = fit_training_codes(run, data)
        return {"prior": FITTED_GAUSSIAN, "prior_mean": json.dumps(fitted.mean.tolist()),
                "prior_std": json.dumps(fitted.std.tolist()), "prior_fitted_on": f"{fitted.count} training images"}
    return {"prior": "other"}


def metadata(run, part: str, precision: str, opset: int, run_sha256: str, exporter: str) -> dict[str, str]:
    """Everything the runtime needs, and where the file came from, as the file's metadata_props."""
    model = run.model
    meta = {
        "format": FORMAT, "part": part, "precision": precision, "variant": run.variant,
        "latent_dim": str(model.latent_dim), "num_classes": str(model.num_classes),
        "image_shape": json.dumps(list(IMAGE_SHAPE)), "image_value_range": "[0.0, 1.0]",
        "inputs": json.dumps(input_names(model, part)), "output": output_name(part),
        "zoo_version": __version__, "run": run.directory.name, "run_sha256": run_sha256, "opset": str(opset),
        "exporter": f"{exporter} (torch {torch.__version__})",
    }
    if model.num_classes > 0:
        meta["class_codes"] = json.dumps(list(CODES[:model.num_classes]))
        meta["class_characters"] = json.dumps(list(CHARACTERS[:model.num_classes]), ensure_ascii=False)
    return meta


def stamp(graph: onnx.ModelProto, meta: dict[str, str]) -> onnx.ModelProto:
    stamped = onnx.ModelProto()
    stamped.CopyFrom(graph)
    kept = [(p.key, p.value) for p in stamped.metadata_props if p.key not in meta]
    del stamped.metadata_props[:]
    onnx.helper.set_model_props(stamped, {**dict(kept), **meta})
    stamped.producer_name, stamped.producer_version = "cmnist-zoo", __version__
    stamped.doc_string = f"cmnist-zoo {meta['part']} ({meta['precision']}) of a {meta['variant']} run"
    return stamped


def check_file(path: Path, part: str) -> dict[str, str]:
    """The onnx checker (full) and strict shape inference on the saved file; the inferred batch must stay free."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True,
                                                     data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ZooError(f"the exported {part} fails the ONNX checks: {str(exc).strip().splitlines()[0][:300]}") \
            from None
    if fixed_batch(inferred):
        raise ZooError(f"the exported {part} fixes the batch of {', '.join(fixed_batch(inferred))}")
    return {"onnx.checker.check_model(full_check=True)": "pass", "onnx.shape_inference (strict)": "pass"}


def _torch_run(graph):
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return graph(*(torch.from_numpy(v) for v in feed.values())).numpy()
    return run


class PyTorchSide:
    """PyTorch's outputs and images for each input set and batch size, computed once for every precision.

    Quality is judged on images: a decoder's own, or an encoder's codes decoded by the PyTorch decoder.
    """

    def __init__(self, model, part: str):
        self.part = part
        self._run = _torch_run(graph_for(model, part))
        self._decode = _torch_run(graph_for(model, "decoder"))
        self._outputs: dict[tuple[str, int], np.ndarray] = {}
        self._images: dict[tuple[str, int], np.ndarray] = {}

    def outputs(self, input_set: InputSet, batch: int) -> np.ndarray:
        key = (input_set.name, batch)
        if key not in self._outputs:
            self._outputs[key] = self._run(input_set.batch(batch))
        return self._outputs[key]

    def images(self, input_set: InputSet, batch: int) -> np.ndarray:
        key = (input_set.name, batch)
        if key not in self._images:
            self._images[key] = self.images_of(self.outputs(input_set, batch), input_set.batch(batch))
        return self._images[key]

    def images_of(self, outputs: np.ndarray, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.part == "decoder":
            return outputs[:, 0]
        labels = {k: v for k, v in feed.items() if k == LABEL_INPUT}
        return self._decode({LATENT_INPUT: outputs, **labels})[:, 0]


def _label_text(label: int) -> str:
    return f"{CODES[label]} {CHARACTERS[label]}"


def _as_images(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[:, None]


def parity_inputs(model, part: str, dataset, split, size: int) -> list[InputSet]:
    """Random inputs and real test images (their codes, for a decoder), `size` rows each."""
    rng = np.random.default_rng(SEED)
    order = np.resize(rng.permutation(split.test), size)  # repeated when the test split is smaller than the batch
    labels = dataset.labels[order].astype(np.int64)
    random_labels = rng.integers(0, max(model.num_classes, 1), size).astype(np.int64)
    conditional = model.num_classes > 0
    images = _as_images(dataset.images[order])
    names = [f"test image #{i} ({_label_text(y)})" for i, y in zip(order, labels)]
    if part == "decoder":
        codes = np.concatenate([_torch_run(graph_for(model, "encoder"))(chunk)
                                for chunk in _chunks({IMAGE_INPUT: images, LABEL_INPUT: labels}, conditional)])
        random = InputSet(f"random latents (standard normal, seed {SEED})",
                          {LATENT_INPUT: draw_latents(size, model.latent_dim, SEED)},
                          [f"random latent #{i}" for i in range(size)])
        real = InputSet("codes of test images", {LATENT_INPUT: codes}, [f"the code of {n}" for n in names],
                        images[:, 0])
    else:
        random = InputSet(f"random images (uniform noise, seed {SEED})",
                          {IMAGE_INPUT: rng.random((size, *IMAGE_SHAPE), dtype=np.float32)},
                          [f"random image #{i}" for i in range(size)])
        real = InputSet("test images", {IMAGE_INPUT: images}, names, images[:, 0])
    if conditional:
        random.inputs[LABEL_INPUT] = random_labels
        random.item_names = [f"{n} with label {_label_text(y)}" for n, y in zip(random.item_names, random_labels)]
        real.inputs[LABEL_INPUT] = labels
    return [random, real]


def _chunks(inputs: dict[str, np.ndarray], conditional: bool) -> Iterator[dict[str, np.ndarray]]:
    names = list(inputs) if conditional else [n for n in inputs if n != LABEL_INPUT]
    total = len(next(iter(inputs.values())))
    for start in range(0, total, CHUNK):
        yield {n: inputs[n][start:start + CHUNK] for n in names}


def calibration_batches(model, part: str, dataset, split) -> list[dict[str, np.ndarray]]:
    """Training inputs for int8 calibration: training images, or for a decoder their codes."""
    rng = np.random.default_rng(SEED)
    count = min(CALIBRATION_IMAGES, len(split.train))
    count -= count % CHUNK if count > CHUNK else 0  # batches of one size: the percentile calibrator stacks them
    chosen = np.sort(rng.choice(split.train, count, replace=False))
    conditional = model.num_classes > 0
    batches = list(_chunks({IMAGE_INPUT: _as_images(dataset.images[chosen]),
                            LABEL_INPUT: dataset.labels[chosen].astype(np.int64)}, conditional))
    if part == "encoder":
        return batches
    encode = _torch_run(graph_for(model, "encoder"))
    return [{LATENT_INPUT: encode(batch), **{k: v for k, v in batch.items() if k == LABEL_INPUT}}
            for batch in batches]


MAX_BATCH = 4096  # parity inputs of this many images fit easily in memory


def _validate(parts: Sequence[str], precisions: Sequence[str], opset: int, batch_sizes: Sequence[int]) -> None:
    for what, given, known in (("part", parts, PARTS), ("precision", precisions, PRECISIONS)):
        unknown = [g for g in given if g not in known]
        if unknown or not given:
            raise ZooError(f"unknown {what} {', '.join(map(repr, unknown)) or '(none given)'}; "
                           f"use one or more of {', '.join(known)}")
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ZooError(f"--opset {opset}: use {MIN_OPSET} to {onnx.defs.onnx_opset_version()} "
                       f"(default {DEFAULT_OPSET})")
    if not batch_sizes or any(not 1 <= b <= MAX_BATCH for b in batch_sizes):
        raise ZooError(f"batch sizes must be whole numbers from 1 to {MAX_BATCH}; got {list(batch_sizes)}")


def accept(graph: onnx.ModelProto, path: Path, report: dict, prove: Callable[[ort.InferenceSession], dict]) -> dict:
    """Save under a temporary name, check, and rename to `path` only if every check passes; `prove` runs parity."""
    _, report_name, failed_name = file_names(report["part"], report["precision"])
    report_path, failed_path = path.with_name(report_name), path.with_name(failed_name)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save_model(graph, str(temporary), save_as_external_data=False)
        report["checks"] = check_file(temporary, report["part"])
        try:
            session = open_session(temporary, ["CPUExecutionProvider"])
        except RuntimeInputError as exc:
            raise ZooError(f"onnxruntime cannot run the exported {report['part']} (opset {report['opset']}): "
                           f"{exc}") from None
        report.update(prove(session))
        del session
        if report["verdict"] != "pass":
            write_json(failed_path, report)
            raise ParityFailed(f"the {report['part']} ({report['precision']}) failed its parity check with "
                               f"PyTorch, so no {path.name} was written; worst input: {describe_worst(report)}; "
                               f"the figures are in {failed_path}")
        write_json(report_path, report)
        os.replace(temporary, path)
        failed_path.unlink(missing_ok=True)
    finally:
        temporary.unlink(missing_ok=True)
    return report


def export_run(run_dir: Path, out: Path | None = None, parts: Sequence[str] = PARTS,
               precisions: Sequence[str] = ("fp32",), opset: int = DEFAULT_OPSET, data: str | None = None,
               batch_sizes: Sequence[int] = BATCH_SIZES, quiet: bool = False) -> list[Exported]:
    """Export the chosen parts of a run at the chosen precisions; raises ParityFailed at the first that fails."""
    parts, precisions = list(dict.fromkeys(parts)), list(dict.fromkeys(precisions))
    batch_sizes = tuple(dict.fromkeys(int(b) for b in batch_sizes))
    _validate(parts, precisions, opset, batch_sizes)
    run = load_run(run_dir)
    model = run.model.eval()
    dataset = load_run_data(run.config, data, quiet)
    split = make_split(dataset, run.config["train"]["split"], run.config["train"]["seed"])
    out = Path(out) if out else run.directory / "export"
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _export_parts(run, model, dataset, split, out, parts, precisions, opset, data, batch_sizes)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed export leaves no empty folder that looks like an export


def _export_parts(run, model, dataset, split, out: Path, parts: Sequence[str], precisions: Sequence[str],
                  opset: int, data: str | None, batch_sizes: Sequence[int]) -> list[Exported]:
    run_sha256 = sha256_of(run.directory / MODEL)
    prior = prior_metadata(run, data) if "decoder" in parts else {}
    exported = []
    for part in parts:
        fp32, exporter = to_onnx(model, part, opset, run.variant)
        input_sets = parity_inputs(model, part, dataset, split, max(batch_sizes))
        reference = PyTorchSide(model, part)
        for precision in precisions:
            calibration = calibration_batches(model, part, dataset, split) if precision == "int8" else None
            meta = metadata(run, part, precision, opset, run_sha256, exporter) | (prior if part == "decoder" else {})
            try:
                graph = stamp(convert(fp32, precision, calibration), meta)
            except Exception as exc:  # onnx / onnxruntime converters: their failure is not the user's input
                raise ZooError(f"converting the {part} to {precision} failed ({type(exc).__name__}: "
                               f"{first_line(exc)}); the other precisions may still work") from None
            name, report_name, _ = file_names(part, precision)
            report = {"file": name, "part": part, "precision": precision, "variant": run.variant,
                      "run": str(run.directory), "run_sha256": run_sha256, "opset": opset,
                      "exporter": meta["exporter"],
                      "onnxruntime": f"{ort.__version__}, CPUExecutionProvider",
                      "reference": "the PyTorch model in fp32 on the CPU"}
            prove = partial(check_parity, output=output_name(part), reference=reference, input_sets=input_sets,
                            batch_sizes=batch_sizes, tolerance=TOLERANCES[precision])
            accept(graph, out / name, report, prove)
            exported.append(Exported(part, precision, out / name, out / report_name, report))
    return exported
