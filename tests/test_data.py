"""The data loader reads the download as it comes and names the file and the problem when something is off."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmnist_zoo import data as data_module
from cmnist_zoo.charset import CHARACTERS, VALUES
from cmnist_zoo.data import load_dataset, resolve_source
from cmnist_zoo.errors import ZooError
from cmnist_zoo.splits import make_split

HEADER = "suite_id,sample_id,code,value,character"


def _jpeg(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def _files(writers: int = 3, samples: int = 2) -> dict[str, bytes]:
    """A miniature download: the CSV and one JPEG per row, with the public layout."""
    rng = np.random.default_rng(0)
    rows, files = [HEADER], {}
    for suite in range(1, writers + 1):
        for sample in range(1, samples + 1):
            for code in range(1, 16):
                rows.append(f"{suite},{sample},{code},{VALUES[code - 1]},{CHARACTERS[code - 1]}")
                image = (rng.random((64, 64)) > 0.97).astype(np.uint8) * 255
                files[f"data/data/input_{suite}_{sample}_{code}.jpg"] = _jpeg(image)
    files["chinese_mnist.csv"] = ("\n".join(rows) + "\n").encode("utf-8")
    return files


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def test_reads_zip_and_folder_alike(tmp_path):
    files = _files()
    from_zip = load_dataset(str(_zip(tmp_path / "cm.zip", files)))
    from_folder = load_dataset(str(_folder(tmp_path / "unpacked", files)))
    assert from_zip.images.shape == (90, 64, 64) and from_zip.images.dtype == np.uint8
    np.testing.assert_array_equal(from_zip.images, from_folder.images)
    np.testing.assert_array_equal(from_zip.codes, from_folder.codes)
    assert sorted(set(from_zip.codes)) == list(range(1, 16))
    assert sorted(set(from_zip.suites)) == [1, 2, 3]


def test_accepts_images_directly_under_data(tmp_path):
    files = {name.replace("data/data/", "data/"): data for name, data in _files().items()}
    assert len(load_dataset(str(_folder(tmp_path / "flat", files)))) == 90


def test_cache_is_reused_and_notices_a_changed_file(tmp_path, monkeypatch):
    files = _files()
    folder = _folder(tmp_path / "unpacked", files)
    first = load_dataset(str(folder))
    cached = sorted(Path(os.environ["ZOO_CACHE_DIR"]).glob("chinese-mnist-*.npz"))
    assert cached, "decoding should leave a cache behind"
    with monkeypatch.context() as patched:
        patched.setattr(data_module, "_decode_image", lambda *a: pytest.fail("a cache hit decoded an image"))
        again = load_dataset(str(folder))
    np.testing.assert_array_equal(first.images, again.images)
    name = "data/data/input_1_1_1.jpg"
    (folder / name).write_bytes(_jpeg(np.full((64, 64), 255, np.uint8)))
    changed = load_dataset(str(folder))
    assert changed.source_hash != first.source_hash
    assert changed.images[0].mean() > 200


@pytest.mark.parametrize("breakage, expected", [
    (lambda f: f.pop("data/data/input_2_1_5.jpg"), "input_2_1_5.jpg: image is missing"),
    (lambda f: f.update({"data/data/input_9_9_9.jpg": f["data/data/input_1_1_1.jpg"]}),
     "input_9_9_9.jpg: image has no row"),
    (lambda f: f.update({"data/data/input_1_1_3.jpg": f["data/data/input_1_1_3.jpg"][:200]}),
     "input_1_1_3.jpg: cannot decode"),
    (lambda f: f.update({"data/data/input_1_2_4.jpg": _jpeg(np.zeros((64, 64, 3), np.uint8), "RGB")}),
     "input_1_2_4.jpg: image mode is RGB"),
    (lambda f: f.update({"data/data/input_3_1_7.jpg": _jpeg(np.zeros((28, 28), np.uint8))}),
     "input_3_1_7.jpg: image is 28x28"),
    (lambda f: f.update({"chinese_mnist.csv": b"id,label\n1,2\n"}), "has columns id,label"),
    (lambda f: f.update({"chinese_mnist.csv": f["chinese_mnist.csv"].replace(",7,七".encode(), ",7,八".encode())}),
     "code 8 is 七 (7), but the row says 八 (7)"),
    (lambda f: f.pop("chinese_mnist.csv"), "chinese_mnist.csv is missing"),
])
def test_broken_downloads_get_one_message_naming_the_file(tmp_path, breakage, expected):
    files = _files()
    breakage(files)
    with pytest.raises(ZooError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(str(_zip(tmp_path / "broken.zip", files)))


def _damage_member(path: Path, name: str, damage: str) -> None:
    """Damage one member of a deflated zip in place, as a bad download or a foreign archiver would."""
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    local = info.header_offset
    if damage == "deflate stream":  # a block of the reserved type 3: zlib cannot read past it
        data = local + 30 + int.from_bytes(blob[local + 26:local + 28], "little") + \
            int.from_bytes(blob[local + 28:local + 30], "little")
        blob[data] = 0xFF
    else:  # the central directory entry says how to read the member
        central = blob.rindex(name.encode()) - 46  # the directory comes after all the data
        assert blob[central:central + 4] == b"PK\x01\x02"
        if damage == "encrypted":
            blob[central + 8] |= 0x01
        else:  # "unsupported compression": method 99 is AES, which zipfile cannot read
            blob[central + 10:central + 12] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("damage", ["deflate stream", "encrypted", "unsupported compression"])
def test_a_damaged_zip_member_is_one_message_naming_the_zip_and_the_member(tmp_path, damage):
    from click.testing import CliRunner

    from cmnist_zoo.cli import cli

    from conftest import assert_clean_failure

    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in _files().items():
            z.writestr(name, data)
    member = "data/data/input_2_1_5.jpg"
    _damage_member(path, member, damage)
    with pytest.raises(ZooError, match=f"damaged.zip:{member}: cannot read it from the zip"):
        load_dataset(str(path), quiet=True)
    result = CliRunner().invoke(cli, ["train", "concrete", "--data", str(path), "--out", str(tmp_path / "run")])
    assert_clean_failure(result, f"{path}:{member}")
    assert not (tmp_path / "run").exists()


def test_missing_path_and_non_zip_are_reported(tmp_path):
    with pytest.raises(ZooError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere.zip"))
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(ZooError, match="not a readable zip"):
        load_dataset(str(junk))


def test_source_comes_from_flag_then_environment_then_synthetic(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_DATA", raising=False)
    assert resolve_source(None) == "synthetic"
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    assert resolve_source(None) == str(tmp_path.resolve())
    assert resolve_source("synthetic:4") == "synthetic:4"
    with pytest.raises(ZooError, match="synthetic writers"):
        resolve_source("synthetic:lots")


def test_synthetic_stand_in_matches_the_format_and_is_deterministic(tiny_data):
    from cmnist_zoo.synthetic import generate

    data = load_dataset(tiny_data, quiet=True)
    assert data.images.shape == (900, 64, 64) and data.images.dtype == np.uint8
    assert sorted(set(data.codes)) == list(range(1, 16))
    ink = data.images / 255.0
    assert 0.003 < ink.mean() < 0.03, "thin light strokes on black, like the real images"
    again = generate(writers=2, samples_per_writer=1, seed=0)["images"]
    np.testing.assert_array_equal(again, generate(writers=2, samples_per_writer=1, seed=0)["images"])
    assert not np.array_equal(again, generate(writers=2, samples_per_writer=1, seed=1)["images"])


def test_writer_split_keeps_each_hand_on_one_side(tiny_data):
    data = load_dataset(tiny_data, quiet=True)
    split = make_split(data, "writer", seed=3)
    parts = [set(data.suites[idx]) for idx in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(split.train) + len(split.val) + len(split.test) == len(data)
    assert np.array_equal(split.test, make_split(data, "writer", seed=3).test)
    assert not np.array_equal(split.test, make_split(data, "writer", seed=4).test)


def test_image_split_is_the_studys_70_30(tiny_data):
    data = load_dataset(tiny_data, quiet=True)
    split = make_split(data, "image", seed=0)
    assert len(split.test) == round(0.3 * len(data))
    assert len(set(split.train) | set(split.val) | set(split.test)) == len(data)


def test_real_data_loads_and_checks(real_data):
    data = load_dataset(real_data, quiet=True)
    assert data.images.shape == (15000, 64, 64)
    assert np.bincount(data.codes)[1:].tolist() == [1000] * 15
    assert len(set(data.suites)) == 100
