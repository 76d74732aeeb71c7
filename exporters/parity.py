"""Proof that an exported graph computes what the PyTorch model computes, at every batch size tried.

Running the saved file at several batch sizes is what proves the batch dimension dynamic: a graph can name its batch
axis and still hold the example batch inside (a reshape, say), which only shows when it runs at another size.

fp32 must agree with PyTorch element by element. fp16 and int8 are judged by the images they keep: PSNR against the
PyTorch images (peak 1, images being in [0, 1]) and, on real test images, how much the NMSE of the reconstructions
(MSE over that of an all-black prediction, as in `zoo evaluate`) grows. An encoder's images are its codes decoded
by the PyTorch decoder, so both parts are judged on the same scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

BATCH_SIZES = (1, 7, 256)
# The NMSE of a handful of images swings from one image to the next (an int8 `concrete` decoder: +7.9 % on one test
# image, +2.4 % on seven, +4.0 % on 256), so its growth is judged only on batches of at least this many images.
NMSE_MIN_IMAGES = 64


@dataclass(frozen=True)
class Tolerance:
    """fp32: |onnx - torch| <= atol + rtol * (largest |torch| of the item). fp16/int8: PSNR and NMSE growth limits.

    `real_inputs_only`: judge quality on real test inputs only; random inputs are reported but not judged (int8 is
    calibrated on real inputs, and uniform noise images lie far outside the ranges it was calibrated for).
    """

    atol: float | None = None
    rtol: float | None = None
    min_psnr_db: float | None = None
    max_nmse_increase: float | None = None
    real_inputs_only: bool = False

    @property
    def elementwise(self) -> bool:
        return self.atol is not None

    def describe(self) -> str:
        if self.elementwise:
            return f"|error| <= {self.atol:g} + {self.rtol:g} * the item's largest |PyTorch output|"
        rule = (f"PSNR >= {self.min_psnr_db:g} dB against PyTorch, NMSE increase <= {self.max_nmse_increase:.1%} "
                f"on batches of {NMSE_MIN_IMAGES}+ test images")
        return rule + (", judged on real test inputs only" if self.real_inputs_only else "")


# Measured on `concrete` trained on the real data (after 5 and after 10 epochs), batches 1, 7 and 256:
#   fp32: decoder max error 1e-6 on [0, 1] images; encoder 2.3e-5 on codes of noise images (up to ~50), i.e. about
#         5 % of this tolerance. 1e-5 (plus 1e-5 of the item's scale) leaves room for other CPUs' summation order.
#   fp16: PSNR 85-107 dB, NMSE change under 0.03 %.
#   int8: PSNR 43-54 dB on real inputs (16 dB on uniform noise images, far outside its calibration), NMSE +1.6 %
#         (decoder) and +2.8 % (encoder) at batch 256 after 10 epochs; the better a model is trained, the more int8
#         costs it, so the limit leaves room for that.
# The limits sit well below what was measured and still catch a broken graph (a scaled weight, a wrong calibration).
TOLERANCES = {
    "fp32": Tolerance(atol=1e-5, rtol=1e-5),
    "fp16": Tolerance(min_psnr_db=60.0, max_nmse_increase=0.005),
    "int8": Tolerance(min_psnr_db=30.0, max_nmse_increase=0.10, real_inputs_only=True),
}


@dataclass
class InputSet:
    """Inputs with one row per item (at least as many as the largest batch), and what each row is."""

    name: str
    inputs: dict[str, np.ndarray]
    item_names: list[str]
    targets: np.ndarray | None = None  # the real images [N, H, W] for NMSE; None for random inputs

    @property
    def real(self) -> bool:
        return self.targets is not None

    def batch(self, size: int) -> dict[str, np.ndarray]:
        return {name: values[:size] for name, values in self.inputs.items()}


class Reference(Protocol):
    """The PyTorch side of the comparison."""

    def outputs(self, input_set: InputSet, batch: int) -> np.ndarray: ...

    def images(self, input_set: InputSet, batch: int) -> np.ndarray:
        """PyTorch's images [B, H, W] for these inputs."""

    def images_of(self, outputs: np.ndarray, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The images [B, H, W] that the graph's outputs amount to."""


def _psnr(mse: float) -> float:
    """PSNR in dB for images in [0, 1]; identical images get 200 dB rather than infinity (JSON has none)."""
    return 10 * math.log10(1.0 / max(mse, 1e-20))


def _nmse(images: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((images - targets) ** 2) / np.mean(targets ** 2))


def _compare(got: np.ndarray, input_set: InputSet, batch: int, reference: Reference,
             tolerance: Tolerance) -> tuple[dict, float, np.ndarray]:
    """The figures of one batch, the share of the tolerance used (over 1 fails) and a score per item (the higher,
    the worse) to name the worst input."""
    want = reference.outputs(input_set, batch)
    error = np.abs(got.astype(np.float64) - want.astype(np.float64)).reshape(len(got), -1)
    figures = {"max_abs_error": float(error.max()), "mean_abs_error": float(error.mean())}
    if tolerance.elementwise:
        scale = np.abs(want.reshape(len(want), -1)).max(1, keepdims=True)
        bound = np.broadcast_to(tolerance.atol + tolerance.rtol * scale, error.shape)
        ratio = np.divide(error, bound, out=np.where(error > 0, np.inf, 0.0), where=bound > 0)
        per_item = ratio.max(1)
        return figures, float(per_item.max()), per_item
    images, wanted = reference.images_of(got, input_set.batch(batch)), reference.images(input_set, batch)
    per_item = ((images - wanted) ** 2).reshape(len(got), -1).mean(1)
    mse = float(per_item.mean())
    figures["psnr_db"] = _psnr(mse)
    used = [mse / 10 ** (-tolerance.min_psnr_db / 10)]
    if input_set.real:
        targets = input_set.targets[:batch]
        figures["nmse"], figures["nmse_pytorch"] = _nmse(images, targets), _nmse(wanted, targets)
        figures["nmse_increase"] = figures["nmse"] / figures["nmse_pytorch"] - 1
        if batch >= NMSE_MIN_IMAGES:
            used.append(max(figures["nmse_increase"], 0.0) / tolerance.max_nmse_increase)
    return figures, float(max(used)), per_item


def check_parity(session, output: str, reference: Reference, input_sets: list[InputSet],
                 batch_sizes: tuple[int, ...], tolerance: Tolerance) -> dict:
    """Run the graph and PyTorch on each input set at each batch size; the report says pass or fail and why."""
    results, worst, worst_used = [], None, -1.0
    for input_set in input_sets:
        judged = input_set.real or not tolerance.real_inputs_only
        for batch in batch_sizes:
            entry, used, per_item = {"inputs": input_set.name, "batch": batch}, math.inf, None
            try:
                (got,) = session.run([output], input_set.batch(batch))
            except Exception as exc:  # a graph that cannot run at this batch size fails here, whatever it raises
                entry["error"] = f"onnxruntime failed: {' '.join(str(exc).split())}"
            else:
                expected_shape = reference.outputs(input_set, batch).shape
                if got.shape != expected_shape:
                    entry["error"] = f"output shape {list(got.shape)}, PyTorch's {list(expected_shape)}"
                elif not np.isfinite(got).all():
                    entry["error"] = "the graph gave NaN or infinite values"
                else:
                    figures, used, per_item = _compare(got, input_set, batch, reference, tolerance)
                    entry.update(figures, tolerance_used=used if math.isfinite(used) else None)
            if "error" not in entry and not judged:
                entry["verdict"] = "reported, not judged"
                results.append(entry)
                continue
            entry["verdict"] = "pass" if used <= 1.0 else "fail"
            if used > worst_used:
                item = 0 if per_item is None else int(np.argmax(per_item))
                worst_used = used
                worst = {"inputs": input_set.name, "batch": batch, "item": input_set.item_names[item]}
            results.append(entry)
    return {
        "verdict": "fail" if any(r["verdict"] == "fail" for r in results) else "pass",
        "tolerance": {**{k: v for k, v in asdict(tolerance).items() if v is not None}, "rule": tolerance.describe()},
        "batch_sizes": list(batch_sizes),
        "results": results,
        "worst": worst,
    }


def summarize(report: dict) -> str:
    """The verdict and the weakest judged figures, in a few words."""
    judged = [r for r in report["results"] if r["verdict"] in ("pass", "fail") and "error" not in r]
    sizes = ", ".join(map(str, report["batch_sizes"]))
    if not judged:
        figures = "no batch ran"
    elif "psnr_db" in judged[0]:
        figures = f"lowest PSNR {min(r['psnr_db'] for r in judged):.1f} dB"
        growth = [r["nmse_increase"] for r in judged if "nmse_increase" in r and r["batch"] >= NMSE_MIN_IMAGES]
        if growth:
            figures += f", NMSE {max(growth):+.2%}"
    else:
        figures = f"max abs error {max(r['max_abs_error'] for r in judged):.2g}"
    used = [r["tolerance_used"] for r in judged if r.get("tolerance_used") is not None]
    if used:
        figures += f"; {max(used):.0%} of the tolerance used"
    return f"{report['precision']} {report['part']}, parity {report['verdict']} at batch {sizes}: {figures}"


def describe_worst(report: dict) -> str:
    """The worst input of a report and by how much it missed, in one line."""
    worst = report["worst"]
    entry = next(r for r in report["results"] if r["inputs"] == worst["inputs"] and r["batch"] == worst["batch"])
    if "error" in entry:
        detail = entry["error"] if len(entry["error"]) <= 240 else entry["error"][:240] + "..."
    elif "psnr_db" in entry:
        detail = f"PSNR {entry['psnr_db']:.1f} dB"
        if "nmse_increase" in entry:
            detail += f", NMSE {entry['nmse_increase']:+.1%}"
    else:
        detail = f"max abs error {entry['max_abs_error']:.3g}"
    used = f", {entry['tolerance_used']:.3g}x the tolerance" if entry.get("tolerance_used") is not None else ""
    return (f"{worst['item']} ({worst['inputs']}, batch {worst['batch']}): {detail}{used} "
            f"({report['tolerance']['rule']})")
