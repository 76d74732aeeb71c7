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
itself takes class indices 0..14. Latents for `sample` come from `draw_latents` (`seeded_normal`: splitmix64 and
Box-Muller, simple enough to repeat exactly in another language): a PyTorch sampler or the web page of
`zoo export --web` that draws them the same way gets the same images for the same seed.
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
# How `sample` draws latents, as the export recorded it: from N(0, I), the prior of the zoo's generative variants;
# from a diagonal Gaussian fitted to the codes of the training images (models without a prior, as `zoo sample`
# does for them); from a Gaussian mixture per class fitted to those codes (conditional models that ask for it, see
# ClassMixture); or not at all (a prior of another kind, which this runtime cannot draw from).
STANDARD_NORMAL, FITTED_GAUSSIAN, CLASS_MIXTURE = "standard_normal", "fitted_gaussian", "class_mixture"


class RuntimeInputError(ValueError):
    """A file or an input this runtime cannot use; the message says which and what would work."""


_MASK64 = (1 << 64) - 1
_GOLDEN_GAMMA, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(seed: int, counters: np.ndarray) -> np.ndarray:
    """Output number `counters` (0, 1, ...) of the splitmix64 generator started at `seed`, as uint64."""
    with np.errstate(over="ignore"):  # uint64 arithmetic is meant to wrap
        z = np.uint64(seed & _MASK64) + (counters.astype(np.uint64) + np.uint64(1)) * _GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def seeded_normal(n: int, d: int, seed: int) -> np.ndarray:
    """Standard normal float32 [n, d] from `seed`, defined so that other languages can repeat it exactly.

    Element k (row-major) takes outputs 2k and 2k+1 of splitmix64 started at seed mod 2**64, as
    u1 = ((x0 >> 11) + 1) / 2**53 in (0, 1] and u2 = (x1 >> 11) / 2**53 in [0, 1), and is
    sqrt(-2 * log(u1)) * cos(2 * pi * u2) computed in float64, then rounded to float32 (exporters/web/app.js has
    the JavaScript twin). numpy's default_rng would be better statistics but cannot be repeated in a web page.
    """
    counters = np.arange(2 * n * d, dtype=np.uint64)
    words = splitmix64(int(seed), counters) >> np.uint64(11)
    u1 = (words[0::2].astype(np.float64) + 1.0) * 2.0 ** -53
    u2 = words[1::2].astype(np.float64) * 2.0 ** -53
    normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return normal.astype(np.float32).reshape(n, d)


def seeded_uniform(n: int, seed: int, start: int) -> np.ndarray:
    """Uniform float64 [n] in [0, 1) from `seed`: element i is (x >> 11) / 2**53 of splitmix64 output start + i."""
    words = splitmix64(int(seed), np.arange(start, start + n, dtype=np.uint64)) >> np.uint64(11)
    return words.astype(np.float64) * 2.0 ** -53


class ClassMixture:
    """A Gaussian mixture over the latents of each class, fitted to training codes (ex-post density estimation).

    weights [C, K], means [C, K, D] and scales [C, K, D, D] (lower-triangular, the covariance's Cholesky factor) for
    C classes with K components each. A draw of n latents for seed s, one class index c_i each, repeatable in other
    languages: e_i = row i of seeded_normal(n, D, s); u_i = seeded_uniform(n, s, 2 * n * D), the same splitmix64
    stream continued; the component k_i is the number of entries of the running sum of weights[c_i] that are <= u_i
    (at most K - 1); and z_i = means[c_i, k_i] + sum over j = 0..D-1, in that order, of scales[c_i, k_i, :, j] * e_ij,
    all in float64, then rounded to float32 (exporters/web/app.js has the JavaScript twin).
    """

    def __init__(self, weights: np.ndarray, means: np.ndarray, scales: np.ndarray):
        self.weights = np.asarray(weights, np.float64)
        self.means = np.asarray(means, np.float64)
        self.scales = np.asarray(scales, np.float64)
        classes, components = self.weights.shape
        dim = self.means.shape[-1]
        if self.means.shape != (classes, components, dim) or self.scales.shape != (classes, components, dim, dim):
            raise ValueError(f"weights {list(self.weights.shape)}, means {list(self.means.shape)} and scales "
                             f"{list(self.scales.shape)} are not [C, K], [C, K, D] and [C, K, D, D]")
        if not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self.scales))
                and np.all(self.weights >= 0) and np.allclose(self.weights.sum(1), 1.0, atol=1e-6)):
            raise ValueError("its weights must be >= 0 and sum to 1 per class, its means and scales finite")

    @property
    def classes(self) -> int:
        return self.weights.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.means.shape[-1]

    @classmethod
    def from_json(cls, text: str) -> "ClassMixture":
        fields = json.loads(text)
        return cls(fields["weights"], fields["means"], fields["scales"])

    def to_json(self) -> str:
        return json.dumps({"weights": self.weights.tolist(), "means": self.means.tolist(),
                           "scales": self.scales.tolist()})

    def draw(self, class_indices: np.ndarray, seed: int) -> np.ndarray:
        """Latents float32 [n, D], one for each class index (0..C-1), drawn with `seed` as the class docstring says."""
        class_indices = np.asarray(class_indices, np.int64)
        n, dim = len(class_indices), self.latent_dim
        noise = seeded_normal(n, dim, seed).astype(np.float64)
        uniform = seeded_uniform(n, seed, 2 * n * dim)
        running = np.cumsum(self.weights, axis=1)[class_indices]  # [n, K]
        chosen = np.minimum((running <= uniform[:, None]).sum(1), self.weights.shape[1] - 1)
        latents = self.means[class_indices, chosen].copy()
        scales = self.scales[class_indices, chosen]
        for j in range(dim):
            latents += scales[:, :, j] * noise[:, j:j + 1]
        return latents.astype(np.float32)


def draw_latents(n: int, latent_dim: int, seed: int | None = None) -> np.ndarray:
    """Standard normal latents [n, latent_dim], the one draw shared by this runtime, the PyTorch sampler and the
    web page; without a seed, a fresh one from the operating system."""
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    return seeded_normal(n, latent_dim, seed)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 0..255, rounding to the nearest level."""
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def cpu_threads() -> int:
    """Intra-op threads for the CPU provider: one, so a decoder never waits for a core its host is using.

    Measured with the `concrete` decoder on a 2-core machine (median ms per call; 2 threads is what onnxruntime
    picks there by itself; `python -m benchmarks.inference --runtimes onnx-fp32 --threads 1,2` measures it again):
        shared with a training run, load average ~5:  batch 1: 1 thread 0.39, 2 threads 0.53;  batch 256: 110, 250
        shared, load average ~9:                      batch 1: 1 thread 0.63, 2 threads 0.82;  batch 256: 349, 687
        idle (benchmarks/README.md):                  batch 1: 1 thread 0.28, 2 threads 0.24;  batch 1024: 357, 255
    A second thread pays only on an idle machine, and then less than it loses on a busy one; one thread also leaves
    the embedding application its cores. Pass `threads=` to `Decoder` where cores are to spare.
    """
    return 1


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1  # these graphs are one chain of layers: nothing runs side by side
    options.log_severity_level = 4  # errors reach the caller as exceptions; the log would only repeat them
    return options


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session for any ONNX file, with a clear error for a file that is missing or not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise RuntimeInputError(f"{path} does not exist")
    options, providers = session_options(threads), list(providers or default_providers())
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind classes; all mean "cannot load this file"
        raise RuntimeInputError(f"{path} is not an ONNX model onnxruntime can load ({first_line(exc)})") from None


def first_line(exc: Exception) -> str:
    """An exception's first line, short enough for a one-line error message."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


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

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.session = open_session(self.path, providers, threads)
        self.metadata = meta = read_metadata(self.session, self.path, "decoder")
        try:
            self.variant = meta["variant"]
            self.precision = meta["precision"]
            self.latent_dim = int(meta["latent_dim"])
            self.num_classes = int(meta["num_classes"])
            self.image_shape = tuple(json.loads(meta["image_shape"]))
            self.class_codes: tuple[int, ...] = tuple(json.loads(meta.get("class_codes", "[]")))
            self.characters: tuple[str, ...] = tuple(json.loads(meta.get("class_characters", "[]")))
            self.prior = meta.get("prior", "none")
            if self.prior == FITTED_GAUSSIAN:
                self._prior_mean = np.array(json.loads(meta["prior_mean"]), np.float32)
                self._prior_std = np.array(json.loads(meta["prior_std"]), np.float32)
            if self.prior == CLASS_MIXTURE:
                self.mixture = ClassMixture.from_json(meta["prior_mixture"])
        except (KeyError, ValueError, TypeError) as exc:
            raise RuntimeInputError(f"{self.path}: its cmnist-zoo metadata is incomplete or damaged "
                                    f"({type(exc).__name__}: {exc})") from None
        self._check_metadata_against_graph()

    def _check_metadata_against_graph(self) -> None:
        """The metadata describes this graph: a file whose metadata was edited or mixed up is refused here, rather
        than failing inside onnxruntime or drawing images of classes the graph never sees."""
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        problems = []
        latent_shape = inputs.get(LATENT_INPUT)
        if latent_shape is None:
            problems.append(f"the graph has no {LATENT_INPUT!r} input")
        elif len(latent_shape) != 2:
            problems.append(f"the graph's {LATENT_INPUT!r} input has shape {latent_shape}, not [batch, latent_dim]")
        elif isinstance(latent_shape[1], int) and latent_shape[1] != self.latent_dim:
            problems.append(f"latent_dim is {self.latent_dim} but the graph's {LATENT_INPUT!r} input takes "
                            f"{latent_shape[1]}")
        if self.conditional and LABEL_INPUT not in inputs:
            problems.append(f"num_classes is {self.num_classes} but the graph has no {LABEL_INPUT!r} input")
        if not self.conditional and LABEL_INPUT in inputs:
            problems.append(f"num_classes is {self.num_classes} but the graph takes a {LABEL_INPUT!r} input")
        for key, values in (("class_codes", self.class_codes), ("class_characters", self.characters)):
            if len(values) != self.num_classes:
                problems.append(f"{key} has {len(values)} entries for num_classes {self.num_classes}")
        if self.prior == FITTED_GAUSSIAN:
            for key, values in (("prior_mean", self._prior_mean), ("prior_std", self._prior_std)):
                if values.shape != (self.latent_dim,):
                    problems.append(f"{key} has shape {list(values.shape)}, not [{self.latent_dim}] (latent_dim)")
        if self.prior == CLASS_MIXTURE:
            if (self.mixture.classes, self.mixture.latent_dim) != (self.num_classes, self.latent_dim):
                problems.append(f"prior_mixture is for {self.mixture.classes} classes of {self.mixture.latent_dim} "
                                f"latents, not {self.num_classes} of {self.latent_dim}")
        if problems:
            raise RuntimeInputError(f"{self.path}: its cmnist-zoo metadata does not match its graph: "
                                    f"{'; '.join(problems)}; export it again with `zoo export RUN_DIR`")

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
        if indices is not None:
            feed[LABEL_INPUT] = indices
        if len(latents) == 0:
            return np.zeros((0, *self.image_shape[1:]), np.float32)
        try:
            (images,) = self.session.run([IMAGE_OUTPUT], feed)
        except Exception as exc:  # onnxruntime's own pybind classes: the graph refused these inputs
            raise RuntimeInputError(f"{self.path}: onnxruntime could not run the decoder on "
                                    f"{len(latents)} latents ({first_line(exc)})") from None
        return images.reshape(len(latents), *self.image_shape[1:]) if self.image_shape[0] == 1 else images

    def prior_latents(self, n: int, seed: int | None = None,
                      labels: Iterable[int | str] | int | str | None = None) -> np.ndarray:
        """n latents [n, latent_dim] from the model's prior (or the density fitted in its place), drawn with `seed`;
        a class-mixture prior needs the labels the latents will be decoded with (one each, or one for all)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise RuntimeInputError(f"n must be a whole number of images, 0 or more; got {n!r}")
        if self.prior not in (STANDARD_NORMAL, FITTED_GAUSSIAN, CLASS_MIXTURE):
            raise RuntimeInputError(f"the {self.variant} model's prior ({self.prior}) is not one this runtime can "
                                    "draw from; decode latents of your own with decode()")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        if self.prior == CLASS_MIXTURE:
            if labels is None:
                raise RuntimeInputError(f"the {self.variant} model draws latents for a chosen class: give the labels "
                                        "the latents are for")
            return self.mixture.draw(self._label_indices(labels, int(n)), seed)
        latents = draw_latents(int(n), self.latent_dim, seed)
        if self.prior == FITTED_GAUSSIAN:
            latents = self._prior_mean + self._prior_std * latents
        return latents

    def sample(self, n: int, label: int | str | None = None, seed: int | None = None) -> np.ndarray:
        """n images uint8 [n, H, W] from latents of the prior drawn with `seed` (see `prior_latents`).

        A conditional decoder without a label cycles through its classes (image i gets class i mod num_classes).
        """
        if label is not None:
            labels = [label] * n
        elif self.conditional:
            labels = [self.class_codes[i % self.num_classes] for i in range(n)]
        else:
            labels = None
        latents = self.prior_latents(n, seed, labels if self.prior == CLASS_MIXTURE else None)
        return to_uint8(self.decode(latents, labels))
