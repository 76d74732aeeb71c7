"""Run an exported cmnist-zoo decoder with onnxruntime alone: no torch, no cmnist_zoo needed.

This module imports only numpy, onnxruntime and the standard library, so another application can use it as it is
(or copy this one file). Everything it needs (latent size, classes, image shape) is read from the file's metadata:

    import numpy as np
    from PIL import Image
    from cmnist_zoo.exporters.runtime import Decoder   # or `from runtime import Decoder` with this file copied

    decoder = Decoder("runs/cvae/export/decoder.onnx")  # CUDA when onnxruntime has it, else the CPU
    print(decoder.variant, decoder.latent_dim, decoder.characters)

    sevens = decoder.sample(8, label="七", seed=42)     # uint8 [8, 64, 64]
    Image.fromarray(np.hstack(sevens)).save("sevens.png")

    z = np.zeros((1, decoder.latent_dim), np.float32)
    mean_image = decoder.decode(z, labels=[8])           # float32 [1, 64, 64] in [0, 1]; 8 is the code of 七

Labels are the data set's class codes 1..15 or their characters (零 ... 亿), as everywhere in the zoo; the graph
itself takes class indices 0..14. Latents for `sample` come from `draw_latents`, which the PyTorch side of the zoo
uses as well, so both give the same images for the same seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnxruntime as ort

FORMAT = "cmnist-zoo-onnx/1"
LATENT_INPUT, LABEL_INPUT, IMAGE_INPUT = "latent", "label", "image"
IMAGE_OUTPUT, CODE_OUTPUT = "image", "code"
STANDARD_NORMAL = "standard_normal"


class RuntimeInputError(ValueError):
    """A file or an input this runtime cannot use; the message says which and what would work."""


def draw_latents(n: int, latent_dim: int, seed: int | None = None) -> np.ndarray:
    """Standard normal latents [n, latent_dim], the one draw shared by this runtime and the PyTorch sampler."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 0..255, rounding to the nearest level."""
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def cpu_threads() -> int:
    """Intra-op threads for the CPU provider: one per core, at most four.

    Measured on a 2-core machine shared with a training run (benchmarks/decoder_speed.py, the `concrete` decoder,
    median of runs, 1 vs 2 threads; 2 is onnxruntime's default there):
        batch 1:   1 thread 0.39 ms, 2 threads 0.53 ms
        batch 256: 1 thread 110 ms,  2 threads 250 ms
    """
    return max(1, min(4, os.cpu_count() or 1))


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1  # these graphs are one chain of layers: nothing runs side by side
    options.log_severity_level = 3  # warnings about unused initializers are not the user's concern
    return options


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None) -> ort.InferenceSession:
    """An onnxruntime session for any ONNX file, with a clear error for a file that is missing or not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise RuntimeInputError(f"{path} does not exist")
    try:
        return ort.InferenceSession(str(path), session_options(), providers=list(providers or default_providers()))
    except Exception as exc:  # onnxruntime raises its own pybind classes; all mean "cannot load this file"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeInputError(f"{path} is not an ONNX model onnxruntime can load ({detail[:200]})") from None


def read_metadata(session: ort.InferenceSession, path: str | os.PathLike, part: str) -> dict[str, str]:
    """The zoo metadata of a loaded file, checked to be a zoo export of the expected part."""
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if metadata.get("format") != FORMAT:
        found = f"format {metadata['format']!r}" if "format" in metadata else "no cmnist-zoo metadata"
        raise RuntimeInputError(f"{path} is an ONNX model but not a cmnist-zoo {part} ({found}); "
                                f"export one with `zoo export RUN_DIR`")
    if metadata.get("part") != part:
        raise RuntimeInputError(f"{path} is a cmnist-zoo {metadata.get('part')}, not a {part}")
    return metadata


class Decoder:
    """An exported decoder: latents (and labels, for conditional variants) in, images in [0, 1] out."""

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None):
        self.path = Path(path)
        self.session = open_session(self.path, providers)
        self.metadata = read_metadata(self.session, self.path, "decoder")
        meta = self.metadata
        self.variant = meta["variant"]
        self.precision = meta["precision"]
        self.latent_dim = int(meta["latent_dim"])
        self.num_classes = int(meta["num_classes"])
        self.image_shape = tuple(json.loads(meta["image_shape"]))
        self.class_codes: tuple[int, ...] = tuple(json.loads(meta.get("class_codes", "[]")))
        self.characters: tuple[str, ...] = tuple(json.loads(meta.get("class_characters", "[]")))
        self.prior = meta.get("prior", "none")
        self._inputs = {i.name for i in self.session.get_inputs()}

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def label_index(self, label: int | str) -> int:
        """A class code (8) or character (七) as the class index the graph takes."""
        if not self.conditional:
            raise RuntimeInputError(f"the {self.variant} decoder is not conditional; it takes no label")
        text = str(label).strip()
        if text in self.characters:
            return self.characters.index(text)
        if text.lstrip("-").isdigit() and int(text) in self.class_codes:
            return self.class_codes.index(int(text))
        known = " ".join(f"{c}={ch}" for c, ch in zip(self.class_codes, self.characters))
        raise RuntimeInputError(f"label {label!r} is not one the {self.variant} decoder knows; use a code or "
                                f"character of: {known}")

    def _label_indices(self, labels: Iterable[int | str] | None, n: int) -> np.ndarray | None:
        if labels is None:
            if self.conditional:
                raise RuntimeInputError(f"the {self.variant} decoder is conditional: give one label per latent "
                                        f"(codes {self.class_codes[0]}..{self.class_codes[-1]} or characters)")
            return None
        if isinstance(labels, (str, int, np.integer)):
            labels = [labels] * n
        indices = np.array([self.label_index(label) for label in labels], dtype=np.int64)
        if len(indices) != n:
            raise RuntimeInputError(f"got {len(indices)} labels for {n} latents; give one label per latent")
        return indices

    def decode(self, latents: np.ndarray, labels: Iterable[int | str] | int | str | None = None) -> np.ndarray:
        """Images float32 [n, H, W] in [0, 1] for latents [n, latent_dim] (and one label each, or one for all)."""
        latents = np.asarray(latents)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise RuntimeInputError(f"latents must have shape [n, {self.latent_dim}] for the {self.variant} decoder; "
                                    f"got {list(latents.shape)}")
        if not np.issubdtype(latents.dtype, np.number) or np.issubdtype(latents.dtype, np.complexfloating):
            raise RuntimeInputError(f"latents must be real numbers; got dtype {latents.dtype}")
        feed = {LATENT_INPUT: np.ascontiguousarray(latents, dtype=np.float32)}
        indices = self._label_indices(labels, len(latents))
        if indices is not None and LABEL_INPUT in self._inputs:
            feed[LABEL_INPUT] = indices
        if len(latents) == 0:
            return np.zeros((0, *self.image_shape[1:]), np.float32)
        (images,) = self.session.run([IMAGE_OUTPUT], feed)
        return images.reshape(len(latents), *self.image_shape[1:]) if self.image_shape[0] == 1 else images

    def sample(self, n: int, label: int | str | None = None, seed: int | None = None) -> np.ndarray:
        """n images uint8 [n, H, W] from standard normal latents drawn with `seed`.

        A conditional decoder without a label cycles through its classes (image i gets class i mod num_classes).
        """
        if self.prior != STANDARD_NORMAL:
            raise RuntimeInputError(f"the {self.variant} model has no standard normal prior to sample from; "
                                    "decode latents of your own with decode()")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise RuntimeInputError(f"n must be a whole number of images, 0 or more; got {n!r}")
        latents = draw_latents(int(n), self.latent_dim, seed)
        if label is not None:
            labels = [label] * n
        elif self.conditional:
            labels = [self.class_codes[i % self.num_classes] for i in range(n)]
        else:
            labels = None
        return to_uint8(self.decode(latents, labels))
