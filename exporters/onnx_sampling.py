"""`zoo sample --onnx FILE`: the grid `zoo sample RUN_DIR` draws, drawn by the torch-free runtime from an export.

Latents come from `runtime.draw_latents` (splitmix64 and Box–Muller), the draw `zoo sample RUN_DIR` also uses, so both
give the same images for the same seed. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmnist_zoo.errors import ZooError
from cmnist_zoo.exporters.runtime import CLASS_MIXTURE, FITTED_GAUSSIAN, Decoder, RuntimeInputError
from cmnist_zoo.pictures import save_grid
from cmnist_zoo.sample_grid import ROW_LENGTH, Samples, check_output, default_output, describe, parse_class


def load_decoder(path: Path) -> Decoder:
    try:
        return Decoder(path)
    except RuntimeInputError as exc:
        raise ZooError(str(exc)) from None


def sample_onnx(path: Path, n: int, label: str | None, seed: int, out: Path | None = None) -> tuple[Path, Samples]:
    """Draw from an exported decoder and save the grid beside it (decoder-samples-all-seed0.png, say) or at `out`;
    returns where it went and what was drawn."""
    if n < 1:
        raise ZooError(f"--n must be at least 1 (got {n})")
    if out is not None:
        check_output(Path(out))
    decoder = load_decoder(Path(path))
    code = parse_class(label, decoder.num_classes, f"{path} (a {decoder.variant!r} decoder)")
    if decoder.conditional and code is None:
        codes, per_row = np.repeat(decoder.class_codes, n), n
    else:
        codes, per_row = np.full(n, code or 0), min(n, ROW_LENGTH)
    try:
        labels = codes if decoder.conditional else None
        latents = decoder.prior_latents(len(codes), seed, labels)
        images = decoder.decode(latents, labels)
    except RuntimeInputError as exc:
        raise ZooError(str(exc)) from None
    note = ""
    if decoder.prior == FITTED_GAUSSIAN:
        note = (f"note: the model has no prior; sampling from a diagonal Gaussian fitted to the codes of its "
                f"{decoder.metadata.get('prior_fitted_on', 'training images')}")
    if decoder.prior == CLASS_MIXTURE:
        note = (f"note: codes come from {decoder.metadata.get('prior_description', 'a fitted class mixture')}, "
                "not from the N(0, I) prior")
    samples = Samples(images, codes, per_row, note)
    path = Path(path)
    target = Path(out) if out else path.with_name(f"{path.stem}-{default_output(path.parent, code, seed).name}")
    title = f"{decoder.variant} (ONNX, {decoder.precision}): {describe(code, decoder.num_classes)}, seed {seed}"
    save_grid(target, images, per_row, title, samples.row_titles())
    return target, samples
