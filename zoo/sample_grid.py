"""What a user asks `zoo sample` for and how the grid is laid out, shared by the PyTorch and the ONNX sampler.

Kept free of torch, so that `zoo sample --onnx` runs with nothing but numpy and onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmnist_zoo.charset import parse_label
from cmnist_zoo.errors import ZooError
from cmnist_zoo.pictures import label_text

ROW_LENGTH = 10


@dataclass
class Samples:
    images: np.ndarray  # float [N, 64, 64] in [0, 1]
    codes: np.ndarray  # the character code (1..15) of each image, or 0 for unconditional models
    per_row: int
    note: str = ""  # one line for stderr, when the samples did not come from the model's own prior

    def row_titles(self) -> list[str] | None:
        if not self.codes.any():
            return None
        return [label_text(int(c)) for c in self.codes[::self.per_row]]


def parse_class(label: str | None, num_classes: int, what: str) -> int | None:
    """The character code (1..15) asked for, checked against what the model can condition on."""
    if label is None:
        return None
    try:
        code = parse_label(label)
    except ValueError as exc:
        raise ZooError(f"--label: {exc}") from None
    if not num_classes:
        raise ZooError(f"--label {label}: {what} takes no class, so it cannot draw a chosen character; "
                       "leave out --label")
    return code


def default_output(run_dir: Path, code: int | None, seed: int) -> Path:
    which = f"code{code}" if code else "all"
    return Path(run_dir) / f"samples-{which}-seed{seed}.png"


def check_output(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise ZooError(f"--out {path}: the samples are written as a PNG; give a file name ending in .png")
    if not path.parent.is_dir():
        raise ZooError(f"--out {path}: the folder {path.parent} does not exist")


def describe(code: int | None, num_classes: int) -> str:
    """A title in plain ASCII, since the default plotting fonts have no CJK glyphs."""
    if code:
        return f"samples of the character for {label_text(code)} (code {code})"
    return "samples, one row per character" if num_classes else "samples from the prior"
