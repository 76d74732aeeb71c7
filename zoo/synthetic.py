"""Procedural stand-in for the Chinese MNIST data set.

The real data set (100 writers x 15 characters x 10 samples, 64x64 grayscale JPEGs of thin light strokes on black)
is a separate download.  This module draws look-alike images from hand-described strokes so that a machine without
the download can still train and test autoencoders; it is not meant to be a substitute for results on real data.

Each character is a few strokes in a unit square (x to the right, y downwards).  A writer has a fixed style (size,
aspect, slant, stroke width, brightness, position and a personal distortion of every character); every sample adds a
little rotation, jitter and width change.  Strokes are drawn at 4x resolution, box-filtered down to 64x64 and passed
through JPEG (quality 75, as in the real files) so that the soft edges and faint ringing match the real images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cmnist_zoo.charset import CHARACTERS

SIZE = 64
_OVERSAMPLE = 4
_JPEG_QUALITY = 75
_MARGIN = 3.0  # pixels kept free at every edge, as in the real images
_CENTRE = np.array([SIZE / 2 + 1.5, SIZE / 2 + 1.5])  # real characters sit a little right of and below the middle


def _line(*points: tuple[float, float]) -> np.ndarray:
    """A straight-segment stroke through the given points (corners stay sharp)."""
    return np.array(points, dtype=float)


def _curve(*points: tuple[float, float], rounds: int = 3) -> np.ndarray:
    """A smooth stroke that follows the given control polygon (Chaikin corner cutting, ends kept)."""
    p = np.array(points, dtype=float)
    for _ in range(rounds):
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        inner = np.stack([q, r], axis=1).reshape(-1, 2)[1:-1]
        p = np.vstack([p[:1], inner, p[-1:]])
    return p


# Strokes of each character, in code order (code 1 = 零 ... code 15 = 亿).
_GLYPHS: tuple[tuple[np.ndarray, ...], ...] = (
    (  # 零: 雨-like top over 令
        _line((0.34, 0.02), (0.66, 0.02)),
        _line((0.24, 0.10), (0.22, 0.28)),
        _line((0.24, 0.10), (0.76, 0.10), (0.75, 0.29)),
        _line((0.50, 0.02), (0.50, 0.31)),
        _line((0.33, 0.16), (0.41, 0.19)),
        _line((0.33, 0.23), (0.41, 0.26)),
        _line((0.59, 0.16), (0.67, 0.19)),
        _line((0.59, 0.23), (0.67, 0.26)),
        _curve((0.50, 0.35), (0.40, 0.50), (0.18, 0.62)),
        _curve((0.50, 0.35), (0.62, 0.50), (0.82, 0.60)),
        _line((0.47, 0.53), (0.54, 0.59)),
        _line((0.34, 0.67), (0.64, 0.67), (0.54, 0.78)),
        _line((0.49, 0.74), (0.49, 0.98)),
    ),
    (  # 一
        _curve((0.18, 0.52), (0.50, 0.46), (0.82, 0.48)),
    ),
    (  # 二
        _line((0.28, 0.30), (0.72, 0.28)),
        _line((0.14, 0.70), (0.86, 0.68)),
    ),
    (  # 三
        _line((0.26, 0.18), (0.74, 0.17)),
        _line((0.31, 0.47), (0.69, 0.46)),
        _line((0.14, 0.80), (0.86, 0.78)),
    ),
    (  # 四
        _line((0.16, 0.20), (0.16, 0.84)),
        _line((0.16, 0.20), (0.84, 0.20), (0.84, 0.84)),
        _curve((0.41, 0.20), (0.40, 0.48), (0.29, 0.62)),
        _curve((0.59, 0.20), (0.59, 0.58), (0.70, 0.58)),
        _line((0.16, 0.80), (0.84, 0.80)),
    ),
    (  # 五
        _line((0.20, 0.14), (0.80, 0.14)),
        _line((0.46, 0.14), (0.38, 0.48)),
        _line((0.38, 0.48), (0.72, 0.48), (0.70, 0.84)),
        _line((0.10, 0.85), (0.90, 0.85)),
    ),
    (  # 六
        _line((0.47, 0.07), (0.55, 0.20)),
        _line((0.12, 0.35), (0.88, 0.35)),
        _curve((0.38, 0.50), (0.32, 0.68), (0.18, 0.86)),
        _line((0.62, 0.52), (0.82, 0.82)),
    ),
    (  # 七
        _line((0.10, 0.44), (0.90, 0.30)),
        _curve((0.40, 0.08), (0.40, 0.62), (0.42, 0.88), (0.88, 0.88), (0.90, 0.72), rounds=2),
    ),
    (  # 八
        _curve((0.40, 0.22), (0.36, 0.58), (0.10, 0.86)),
        _curve((0.58, 0.20), (0.66, 0.58), (0.92, 0.84)),
    ),
    (  # 九
        _curve((0.42, 0.08), (0.42, 0.52), (0.14, 0.90)),
        _curve((0.14, 0.36), (0.64, 0.34), (0.62, 0.86), (0.92, 0.88), (0.92, 0.72), rounds=2),
    ),
    (  # 十
        _line((0.10, 0.45), (0.90, 0.43)),
        _line((0.50, 0.06), (0.50, 0.95)),
    ),
    (  # 百
        _line((0.18, 0.08), (0.82, 0.08)),
        _line((0.52, 0.08), (0.44, 0.26)),
        _line((0.30, 0.26), (0.30, 0.94)),
        _line((0.30, 0.26), (0.72, 0.26), (0.72, 0.94)),
        _line((0.30, 0.59), (0.72, 0.59)),
        _line((0.30, 0.92), (0.72, 0.92)),
    ),
    (  # 千
        _curve((0.74, 0.06), (0.50, 0.16), (0.28, 0.20)),
        _line((0.10, 0.50), (0.90, 0.48)),
        _line((0.51, 0.16), (0.51, 0.95)),
    ),
    (  # 万
        _line((0.10, 0.16), (0.90, 0.16)),
        _line((0.40, 0.42), (0.80, 0.42), (0.78, 0.86), (0.66, 0.80)),
        _curve((0.42, 0.16), (0.40, 0.66), (0.14, 0.90)),
    ),
    (  # 亿
        _curve((0.34, 0.06), (0.26, 0.26), (0.08, 0.46)),
        _line((0.22, 0.30), (0.22, 0.94)),
        _line((0.44, 0.20), (0.84, 0.20), (0.46, 0.70)),
        _curve((0.46, 0.70), (0.44, 0.88), (0.90, 0.88), (0.92, 0.74), rounds=2),
    ),
)


@dataclass(frozen=True)
class _Warp:
    """A smooth random displacement field: a few low-frequency sinusoids, so joined strokes stay joined."""

    frequencies: np.ndarray  # [k, 2], cycles per character width
    phases: np.ndarray  # [k]
    amplitudes: np.ndarray  # [k, 2], in character widths

    def __call__(self, points: np.ndarray) -> np.ndarray:
        waves = np.sin(2 * np.pi * points @ self.frequencies.T + self.phases)
        return points + waves @ self.amplitudes


def _random_warp(rng: np.random.Generator, amplitude: float, components: int = 3) -> _Warp:
    """Draw a displacement field whose typical displacement is `amplitude` character widths."""
    return _Warp(
        frequencies=rng.normal(0.0, 0.8, size=(components, 2)),
        phases=rng.uniform(0.0, 2 * np.pi, size=components),
        amplitudes=rng.normal(0.0, amplitude / np.sqrt(components), size=(components, 2)),
    )


@dataclass(frozen=True)
class _Writer:
    """What stays the same across everything one person writes."""

    size: float  # pixels spanned by the unit square
    aspect: float  # horizontal stretch
    slant: float  # horizontal shear per unit of height, positive leans right
    width: float  # stroke width in pixels
    brightness: float  # stroke intensity, 0..255
    centre: np.ndarray  # [2] where the character's centre lands, pixels
    habits: tuple[_Warp, ...]  # the writer's own distortion of each character


def _random_writer(rng: np.random.Generator) -> _Writer:
    """Draw a writer's style; spreads follow the spread of size, slant and stroke look in the real data."""
    return _Writer(
        size=29.0 * np.exp(rng.normal(0.0, 0.3)),
        aspect=0.82 * np.exp(rng.normal(0.0, 0.12)),
        slant=rng.normal(0.0, 0.10),
        width=rng.uniform(0.6, 1.2),
        brightness=rng.uniform(140.0, 250.0),
        centre=_CENTRE + rng.normal(0.0, 3.0, size=2),
        habits=tuple(_random_warp(rng, 0.035) for _ in CHARACTERS),
    )


def _rotation(angle: float) -> np.ndarray:
    """2x2 matrix turning row vectors by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s], [-s, c]])


def _place(
    strokes: tuple[np.ndarray, ...], habit: _Warp, writer: _Writer, rng: np.random.Generator
) -> list[np.ndarray]:
    """Distort one character the way this writer would on this occasion and map it to pixel coordinates."""
    jitter = _random_warp(rng, 0.02)
    size = writer.size * np.exp(rng.normal(0.0, 0.07))
    shape = np.array([[writer.aspect, 0.0], [-writer.slant, 1.0]]) @ _rotation(rng.normal(0.0, 0.05)) * size
    centre = writer.centre + rng.normal(0.0, 1.5, size=2)
    placed = [(jitter(habit(s)) - 0.5) @ shape + centre for s in strokes]
    return _fit_in_frame(placed)


def _fit_in_frame(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Shrink and shift a character, if needed, so that it keeps a margin to every edge like the real images."""
    points = np.vstack(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    middle = (low + high) / 2
    room = SIZE - 2 * _MARGIN
    shrink = min(1.0, room / max(high - low))
    half = (high - low) * shrink / 2
    target = np.clip(middle, _MARGIN + half, SIZE - _MARGIN - half)
    return [(s - middle) * shrink + target for s in strokes]


def _render(strokes: list[np.ndarray], width: float, intensities: np.ndarray) -> Image.Image:
    """Draw the strokes with round ends at 4x resolution and box-filter down, which anti-aliases them."""
    big = Image.new("L", (SIZE * _OVERSAMPLE, SIZE * _OVERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    pen = max(1, round(width * _OVERSAMPLE))
    radius = pen / 2
    for stroke, value in zip(strokes, intensities):
        points = [tuple(p) for p in stroke * _OVERSAMPLE]
        fill = int(value)
        draw.line(points, fill=fill, width=pen, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
    return big.reduce(_OVERSAMPLE)


def _jpeg(image: Image.Image) -> np.ndarray:
    """Round-trip through JPEG so the images carry the same soft edges and faint ringing as the real files."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return np.asarray(Image.open(buffer))


def _sample(code: int, writer: _Writer, rng: np.random.Generator) -> np.ndarray:
    """One handwritten image of character `code` (1..15) by `writer`."""
    strokes = _place(_GLYPHS[code - 1], writer.habits[code - 1], writer, rng)
    width = writer.width * np.exp(rng.normal(0.0, 0.1))
    intensities = writer.brightness * rng.uniform(0.8, 1.0, size=len(strokes))
    return _jpeg(_render(strokes, width, intensities))


def generate(writers: int = 100, samples_per_writer: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Make a Chinese-MNIST-shaped data set: every writer writes every character `samples_per_writer` times.

    Returns {"images": uint8 [N, 64, 64], "codes": int64 [N] in 1..15, "suites": int64 [N] in 1..writers,
    "samples": int64 [N] in 1..samples_per_writer}, N = writers * samples_per_writer * 15, ordered by suite, then
    sample, then code.  Each writer and each image has its own random stream derived from `seed`, so the result is
    byte-identical for the same arguments and the first k writers are the same whatever `writers` is.
    """
    suites, samples, codes = np.meshgrid(
        np.arange(1, writers + 1),
        np.arange(1, samples_per_writer + 1),
        np.arange(1, len(CHARACTERS) + 1),
        indexing="ij",
    )
    suites, samples, codes = (a.reshape(-1).astype(np.int64) for a in (suites, samples, codes))
    images = np.empty((len(codes), SIZE, SIZE), dtype=np.uint8)
    styles = [_random_writer(np.random.default_rng([seed, suite])) for suite in range(1, writers + 1)]
    for i, (suite, sample, code) in enumerate(zip(suites, samples, codes)):
        rng = np.random.default_rng([seed, suite, sample, code])
        images[i] = _sample(int(code), styles[suite - 1], rng)
    return {"images": images, "codes": codes, "suites": suites, "samples": samples}
