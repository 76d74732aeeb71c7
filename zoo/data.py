"""Loads Chinese MNIST (the zip as downloaded, or the folder it unpacks to), checks it, and caches the decoded images.

The JPEGs are decoded once into a uint8 array cached under a key made from the source's content, so a changed file is
noticed and later runs load in a fraction of a second. When no data is given, a procedural stand-in is used.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cmnist_zoo.charset import CHARACTERS, VALUES
from cmnist_zoo.errors import ZooError
from cmnist_zoo.runs import atomic_write

SYNTHETIC = "synthetic"
CSV_NAME = "chinese_mnist.csv"
CSV_COLUMNS = ["suite_id", "sample_id", "code", "value", "character"]
IMAGE_SIZE = 64
SYNTHETIC_NOTICE = ("note: using the built-in synthetic stand-in for Chinese MNIST; pass --data PATH or set ZOO_DATA "
                    "to use the real data set")
_CACHE_FORMAT = "v1"
_ARRAYS = ("images", "codes", "suites", "samples")


@dataclass
class Dataset:
    """Decoded images with their labels and writers, plus where they came from."""

    images: np.ndarray  # uint8 [N, 64, 64]
    codes: np.ndarray  # int64 [N], 1..15
    suites: np.ndarray  # int64 [N], the writer
    samples: np.ndarray  # int64 [N], the repetition 1..10
    source: str
    source_hash: str

    @property
    def labels(self) -> np.ndarray:
        """Class indices 0..14, as models take them."""
        return self.codes - 1

    def __len__(self) -> int:
        return len(self.codes)


def resolve_source(data: str | None) -> str:
    """--data wins, then the ZOO_DATA environment variable, then the synthetic stand-in.

    'synthetic:N' asks for the stand-in with N writers (15 x 10 images each) instead of 100, for quick trials.
    """
    chosen = data or os.environ.get("ZOO_DATA") or SYNTHETIC
    if chosen == SYNTHETIC or chosen.startswith(SYNTHETIC + ":"):
        _synthetic_writers(chosen)
        return chosen
    return str(Path(chosen).expanduser().resolve())


def _synthetic_writers(source: str) -> int:
    count = source.partition(":")[2] or "100"
    if not count.isdigit() or not 1 <= int(count) <= 1000:
        raise ZooError(f"--data {source!r}: the number of synthetic writers must be a whole number from 1 to 1000")
    return int(count)


def cache_dir() -> Path:
    if os.environ.get("ZOO_CACHE_DIR"):
        return Path(os.environ["ZOO_CACHE_DIR"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cmnist-zoo"))


def load_dataset(data: str | None = None, *, quiet: bool = False) -> Dataset:
    """Load the data set named by `data` (a path, 'synthetic' or 'synthetic:N'), decoding only when no cache matches."""
    source = resolve_source(data)
    if source.startswith(SYNTHETIC):
        if not quiet:
            print(SYNTHETIC_NOTICE, file=sys.stderr)
        writers = _synthetic_writers(source)
        key = f"synthetic-{_CACHE_FORMAT}-w{writers}"
        return _cached(key, source, key, lambda: _generate_synthetic(writers))
    reader = _open_source(Path(source))
    key = hashlib.sha256(reader.fingerprint()).hexdigest()
    return _cached(f"chinese-mnist-{_CACHE_FORMAT}-{key[:24]}", source, key, reader.decode)


def _generate_synthetic(writers: int) -> dict[str, np.ndarray]:
    from cmnist_zoo.synthetic import generate

    return generate(writers=writers, samples_per_writer=10, seed=0)


def _cached(name: str, source: str, source_hash: str, build) -> Dataset:
    path = cache_dir() / f"{name}.npz"
    arrays = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in _ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            arrays = None  # a damaged cache is rebuilt, never trusted
    if arrays is None:
        arrays = build()
        _write_cache(path, arrays)
    return Dataset(source=source, source_hash=source_hash, **arrays)


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as exc:
        print(f"warning: could not write the data cache {path}: {exc}", file=sys.stderr)


class _Source:
    """Files of one download, by their path relative to its root, in a zip or a folder."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def fingerprint(self) -> bytes:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        raise NotImplementedError

    def decode(self) -> dict[str, np.ndarray]:
        return _decode(self)


class _ZipSource(_Source):
    def __init__(self, path: Path):
        self.path = path
        if not zipfile.is_zipfile(path):
            raise ZooError(f"{path} is not a readable zip file; pass the Chinese MNIST zip or the folder it "
                           "unpacks to")

    @functools.cached_property
    def zip(self) -> zipfile.ZipFile:
        """Opened only when decoding: reading 15,000 directory entries is wasted work on a cache hit."""
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ZooError(f"{self.path} is not a readable zip file ({exc})") from None

    def names(self):
        return [n for n in self.zip.namelist() if not n.endswith("/")]

    def read(self, name):
        # A damaged, encrypted or oddly compressed member fails with any of these; each is the file's fault.
        try:
            return self.zip.read(name)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise ZooError(f"{self.describe(name)}: cannot read it from the zip "
                           f"({type(exc).__name__}: {exc})") from None

    def fingerprint(self):
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.digest()

    def describe(self, name):
        return f"{self.path}:{name}"


class _FolderSource(_Source):
    def __init__(self, path: Path):
        self.path = path
        self._names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())

    def names(self):
        return self._names

    def read(self, name):
        try:
            return (self.path / name).read_bytes()
        except OSError as exc:
            raise ZooError(f"{self.describe(name)}: cannot read it ({exc})") from None

    def fingerprint(self):
        digest = hashlib.sha256()
        for name in self._names:
            if name == CSV_NAME or name.lower().endswith(".jpg"):
                digest.update(name.encode() + b"\0" + hashlib.sha256(self.read(name)).digest())
        return digest.digest()

    def describe(self, name):
        return str(self.path / name)


def _open_source(path: Path) -> _Source:
    if not path.exists():
        raise ZooError(f"data path {path} does not exist; pass the Chinese MNIST zip or the folder it unpacks to, "
                       "or --data synthetic")
    if path.is_dir():
        return _FolderSource(path)
    return _ZipSource(path)


def _image_dir(source: _Source) -> str:
    """The public download nests images in data/data/; a folder with them directly under data/ is accepted too."""
    names = set(source.names())
    for prefix in ("data/data/", "data/"):
        if any(n.startswith(prefix) and n.count("/") == prefix.count("/") and n.lower().endswith(".jpg")
               for n in names):
            return prefix
    raise ZooError(f"no images found under data/data/ or data/ in {source.describe('')}".rstrip(":/"))


def _read_rows(source: _Source) -> list[tuple[int, int, int]]:
    if CSV_NAME not in source.names():
        raise ZooError(f"{source.describe(CSV_NAME)} is missing; expected the Chinese MNIST layout "
                       f"({CSV_NAME} beside data/data/input_SUITE_SAMPLE_CODE.jpg)")
    where = source.describe(CSV_NAME)
    try:
        text = source.read(CSV_NAME).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ZooError(f"{where} is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if [h.strip() for h in header] != CSV_COLUMNS:
        raise ZooError(f"{where} has columns {','.join(header) or '(none)'}; expected {','.join(CSV_COLUMNS)}")
    rows, seen = [], set()
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(CSV_COLUMNS):
            raise ZooError(f"{where} line {line_no}: expected {len(CSV_COLUMNS)} fields, found {len(row)}")
        try:
            suite, sample, code, value = (int(x) for x in row[:4])
        except ValueError:
            raise ZooError(f"{where} line {line_no}: suite_id, sample_id, code and value must be whole numbers") \
                from None
        if not 1 <= code <= len(CHARACTERS):
            raise ZooError(f"{where} line {line_no}: code {code} is outside 1..15")
        if value != VALUES[code - 1] or row[4].strip() != CHARACTERS[code - 1]:
            raise ZooError(f"{where} line {line_no}: code {code} is {CHARACTERS[code - 1]} ({VALUES[code - 1]}), "
                           f"but the row says {row[4].strip()} ({value})")
        if (suite, sample, code) in seen:
            raise ZooError(f"{where} line {line_no}: suite {suite}, sample {sample}, code {code} appears twice")
        seen.add((suite, sample, code))
        rows.append((suite, sample, code))
    if not rows:
        raise ZooError(f"{where} has no rows")
    return rows


def _decode_image(source: _Source, name: str) -> np.ndarray:
    where = source.describe(name)
    try:
        with Image.open(io.BytesIO(source.read(name))) as image:
            image.load()
            if image.mode != "L":
                raise ZooError(f"{where}: image mode is {image.mode}; expected 8-bit grayscale (L)")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise ZooError(f"{where}: image is {image.size[0]}x{image.size[1]}; expected 64x64")
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ZooError(f"{where}: cannot decode the JPEG ({exc})") from None


def _decode(source: _Source) -> dict[str, np.ndarray]:
    rows = _read_rows(source)
    prefix = _image_dir(source)
    wanted = {f"{prefix}input_{s}_{n}_{c}.jpg": (s, n, c) for s, n, c in rows}
    present = {n for n in source.names() if n.startswith(prefix) and n.count("/") == prefix.count("/")
               and n.lower().endswith(".jpg")}
    missing = sorted(set(wanted) - present)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ZooError(f"{source.describe(missing[0])}: image is missing for its CSV row{more}")
    extra = sorted(present - set(wanted))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ZooError(f"{source.describe(extra[0])}: image has no row in {CSV_NAME}{more}")
    order = sorted(wanted, key=lambda n: wanted[n])
    images = np.empty((len(order), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    from tqdm import tqdm

    for i, name in enumerate(tqdm(order, desc="decoding images (once; cached)", unit="img", leave=False,
                                  disable=None)):
        images[i] = _decode_image(source, name)
    labels = np.array([wanted[n] for n in order], dtype=np.int64)
    return {"images": images, "suites": labels[:, 0], "samples": labels[:, 1], "codes": labels[:, 2]}
