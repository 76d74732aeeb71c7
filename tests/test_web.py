"""`zoo export --web`: the page, in a real (headless) Chromium, draws the Python runtime's images for the same seed and
character, loads nothing from outside the bundle, and says plainly when its model is missing or broken.

The browser tests need Debian's chromium (/usr/bin/chromium), the playwright package and onnxruntime-web from
`npm ci --prefix web`; each is skipped with the reason when one is missing. Screenshots go to $ZOO_TEST_ARTIFACTS
(else the test's tmp_path).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cmnist_zoo.charset import CHARACTERS, CODES
from cmnist_zoo.cli import cli
from cmnist_zoo.errors import ZooError
from cmnist_zoo.exporters import web
from cmnist_zoo.exporters.export import export_run
from cmnist_zoo.exporters.runtime import FORMAT, ClassMixture, Decoder, draw_latents, seeded_normal, splitmix64

from conftest import assert_clean_failure

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
PAGE_TIMEOUT_MS = 90_000  # a 30 MB wasm compiled on a busy 2-core machine
GRID = 16


def ort_web_missing() -> str | None:
    try:
        web.ort_web_dist()
    except ZooError as exc:
        return str(exc)
    return None


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing (pip install playwright)"
    return ort_web_missing()


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ZOO_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def handmade_decoder(path: Path, conditional: bool, prior: str = "standard_normal", latent_dim: int = 6) -> Path:
    """A third party's decoder: sigmoid(latent @ W (+ a per-class image)), with weights large enough that every
    latent coordinate and the class move the pixels a lot, so a wrong latent or label cannot pass for a right one."""
    rng = np.random.default_rng(11)
    pixels = 64 * 64
    inputs = [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", latent_dim])]
    weights = [numpy_helper.from_array(rng.normal(0, 0.8, (latent_dim, pixels)).astype(np.float32), "W"),
               numpy_helper.from_array(np.array([-1, 1, 64, 64], np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["latent", "W"], ["mixed"])]
    if conditional:
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
        weights.append(numpy_helper.from_array(rng.normal(0, 2.0, (15, pixels)).astype(np.float32), "E"))
        nodes += [helper.make_node("Gather", ["E", "label"], ["class_image"], axis=0),
                  helper.make_node("Add", ["mixed", "class_image"], ["logits"])]
    else:
        nodes.append(helper.make_node("Identity", ["mixed"], ["logits"]))
    nodes += [helper.make_node("Sigmoid", ["logits"], ["flat"]), helper.make_node("Reshape", ["flat", "shape"],
                                                                                  ["image"])]
    output = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 64, 64])
    model = helper.make_model(helper.make_graph(nodes, "handmade", inputs, [output], weights),
                              opset_imports=[helper.make_opsetid("", 18)], ir_version=8)  # as zoo exports
    meta = {"format": FORMAT, "part": "decoder", "precision": "fp32", "variant": "handmade",
            "latent_dim": str(latent_dim), "num_classes": str(15 if conditional else 0),
            "image_shape": "[1, 64, 64]", "inputs": json.dumps([i.name for i in inputs]), "output": "image",
            "prior": prior}
    if conditional:
        meta["class_codes"] = json.dumps(list(CODES))
        meta["class_characters"] = json.dumps(list(CHARACTERS), ensure_ascii=False)
    if prior == "class_mixture":  # three components per class, unequal weights, correlated latents
        weights = rng.uniform(0.2, 1, (15, 3))
        scales = np.tril(rng.normal(0, 0.5, (15, 3, latent_dim, latent_dim)))
        mixture = ClassMixture(weights / weights.sum(1, keepdims=True), rng.normal(0, 1.5, (15, 3, latent_dim)),
                               scales)
        meta["prior_mixture"] = mixture.to_json()
    if prior == "fitted_gaussian":
        meta["prior_mean"] = json.dumps(rng.normal(0, 1, latent_dim).round(3).tolist())
        meta["prior_std"] = json.dumps(rng.uniform(0.2, 2, latent_dim).round(3).tolist())
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


@contextmanager
def served(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def opened(browser, folder: Path):
    """The bundle served on localhost and loaded in a fresh page; yields (page, console errors, requests made)."""
    with served(folder) as url:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors, requests = [], []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        try:
            page.goto(url)
            page.wait_for_function("window.zoo && window.zoo.state !== 'loading'", timeout=PAGE_TIMEOUT_MS)
            yield page, errors, requests, url
        finally:
            page.close()


def idle(page, condition: str) -> None:
    """Wait until `condition` holds and no decode is left to do (a new grid also redraws the slider image)."""
    page.wait_for_function(f"({condition}) && zoo.pending === 0", timeout=PAGE_TIMEOUT_MS)


def draw(page, seed: int, character: str | None = None) -> np.ndarray:
    """Seed and character typed and chosen as a person would, then Draw; the grid's pixels [16, 64, 64]."""
    page.fill("#seed", str(seed))
    if character is not None:
        page.select_option("#character", value=str(CHARACTERS.index(character)))
    before = page.evaluate("zoo.decodes.grid")
    page.click("#draw")
    idle(page, f"zoo.decodes.grid > {before}")
    return np.array(page.evaluate("zoo.images.grid"), np.float32).reshape(GRID, 64, 64)


def bundle_of(source: Path, out: Path, *extra) -> Path:
    small = ["--batch-sizes", "1,3"] if source.is_dir() else []  # a run's decoder is exported; a file is copied
    result = zoo("export", source, "--web", out, *small, *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("conditional, prior", [(True, "standard_normal"), (False, "fitted_gaussian"),
                                               (True, "class_mixture")],
                         ids=["conditional-standard-normal", "unconditional-fitted-gaussian", "class-mixture"])
def test_the_page_draws_the_python_runtimes_images_for_the_same_seed(browser, tmp_path, conditional, prior):
    path = handmade_decoder(tmp_path / "third-party.onnx", conditional, prior)
    bundle = bundle_of(path, tmp_path / "bundle")
    decoder = Decoder(bundle / "decoder.onnx")
    character = "七" if conditional else None
    labels = [character] * GRID if conditional else None
    with opened(browser, bundle) as (page, errors, _, _):
        assert page.evaluate("zoo.state") == "ready", page.evaluate("zoo.error")
        got = draw(page, 7, character)
        expected = decoder.decode(decoder.prior_latents(GRID, seed=7, labels=labels), labels)
        assert expected.std() > 0.2, "the handmade decoder must draw images that tell latents apart"
        assert np.abs(got - expected).max() <= 1 / 255
        other_seed = decoder.decode(decoder.prior_latents(GRID, seed=8, labels=labels), labels)
        assert np.abs(got - other_seed).max() > 0.5

        # The sliders start at the first image's latent (within their range) and move its first coordinates.
        first = decoder.prior_latents(GRID, seed=7, labels=labels)[:1]
        sliders = "[...document.querySelectorAll('#sliders input')].map(s => Number(s.value))"
        np.testing.assert_allclose(page.evaluate(sliders), first[0, :4], atol=1e-6)
        before = page.evaluate("zoo.decodes.moved")
        page.eval_on_selector("#slider-0", "slider => { slider.value = slider.min; "
                                           "slider.dispatchEvent(new Event('input')); }")
        idle(page, f"zoo.decodes.moved > {before}")
        latent = first.copy()
        latent[0, :4] = page.evaluate(sliders)
        assert latent[0, 0] < first[0, 0] - 0.5
        moved = decoder.decode(latent, labels[:1] if labels else None)
        np.testing.assert_allclose(page.evaluate("zoo.images.moved"), moved.ravel(), atol=1 / 255)

        # Ten steps from image 3 to image 5 of the grid.
        page.fill("#from", "3")
        page.fill("#to", "5")
        before = page.evaluate("zoo.decodes.between")
        page.click("#interpolate")
        idle(page, f"zoo.decodes.between > {before}")
        ends = decoder.prior_latents(GRID, seed=7, labels=labels).astype(np.float64)[[2, 4]]
        steps = np.arange(10)[:, None] / 9
        between = decoder.decode((ends[0] + steps * (ends[1] - ends[0])).astype(np.float32),
                                 labels[:10] if labels else None)
        np.testing.assert_allclose(page.evaluate("zoo.images.between"), between.ravel(), atol=1 / 255)
        assert "images decoded in" in page.inner_text("#between-time")
        assert not errors


def test_the_pages_seeded_normal_is_the_python_runtimes(browser, tmp_path):
    bundle = bundle_of(handmade_decoder(tmp_path / "d.onnx", True), tmp_path / "bundle")
    with opened(browser, bundle) as (page, _, _, _):
        for seed in (0, 12345, 2**53 - 1):
            got = np.array(page.evaluate(f"Array.from(zoo.seededNormal(64, 9, {seed}))"), np.float32)
            expected = seeded_normal(64, 9, seed).ravel()
            assert np.abs(got - expected).max() <= 1e-6  # float64 log/cos may differ in the last bit
            assert np.mean(got == expected) > 0.95


def test_the_seeded_draw_is_the_documented_splitmix64_and_box_muller():
    # splitmix64's published test vector: seed 1234567 gives 6457827717110365317, 3203168211198807973, ...
    assert splitmix64(1234567, np.arange(3)).tolist() == [6457827717110365317, 3203168211198807973,
                                                          9817491932198370423]
    words = splitmix64(99, np.arange(2)) >> np.uint64(11)
    u1, u2 = (float(words[0]) + 1) / 2**53, float(words[1]) / 2**53
    assert seeded_normal(1, 1, 99)[0, 0] == np.float32(np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))
    z = seeded_normal(4000, 25, 3)
    assert z.dtype == np.float32 and abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert np.array_equal(draw_latents(5, 4, seed=3), seeded_normal(5, 4, 3))
    assert not np.array_equal(draw_latents(5, 4), draw_latents(5, 4))  # no seed: a fresh one each time


def test_zoo_export_web_of_a_run_gives_a_page_that_loads_cleanly(browser, cvae_run, tmp_path, capsys):
    bundle = bundle_of(cvae_run, tmp_path / "bundle")
    assert {p.name for p in bundle.iterdir()} >= {"index.html", "app.js", "style.css", "decoder.onnx", "model.json",
                                                  "ort"}
    metadata = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    assert metadata == Decoder(bundle / "decoder.onnx").metadata
    with opened(browser, bundle) as (page, errors, requests, url):
        assert page.evaluate("zoo.state") == "ready", page.evaluate("zoo.error")
        assert not errors, errors
        assert all(r.startswith(url) or r.startswith("data:") for r in requests), requests
        info = page.inner_text("#model-info")
        assert "cvae" in info and f"latent size {metadata['latent_dim']}" in info
        assert page.locator("#character option").count() == 15
        got = draw(page, 3, "五")
        decoder = Decoder(bundle / "decoder.onnx")
        assert metadata["prior"] == "class_mixture" and "not from the N(0, I) prior" in info
        expected = decoder.decode(decoder.prior_latents(GRID, seed=3, labels="五"), ["五"] * GRID)
        assert np.abs(got - expected).max() <= 1 / 255
        assert "16 images decoded in" in page.inner_text("#grid-time")
        shot = artefacts(tmp_path) / "web-page-cvae.png"
        page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot of the page: {shot}")
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("damage, message", [("delete", "decoder.onnx (the decoder) is missing"),
                                             ("garbage", "decoder.onnx could not be loaded")])
def test_a_bundle_without_a_loadable_model_says_so(browser, tmp_path, damage, message):
    bundle = bundle_of(handmade_decoder(tmp_path / "d.onnx", True), tmp_path / "bundle")
    if damage == "delete":
        (bundle / "decoder.onnx").unlink()
    else:
        (bundle / "decoder.onnx").write_bytes(b"this is not an ONNX model")
    with opened(browser, bundle) as (page, _, _, _):
        assert page.evaluate("zoo.state") == "error"
        assert page.locator("#message").is_visible()
        assert message in page.inner_text("#message")
        assert "zoo export RUN_DIR --web OUT_DIR" in page.inner_text("#message")
        assert not page.locator("#grid").is_visible()


@pytest.fixture
def ort_web():
    reason = ort_web_missing()
    if reason:
        pytest.skip(f"web bundle tests skipped: {reason}")


def test_a_run_with_a_passing_export_has_its_decoder_reused(ort_web, cvae_run, tmp_path):
    run = shutil.copytree(cvae_run, tmp_path / "run")
    export_run(run, run / "export", parts=["decoder"], batch_sizes=(1, 3), quiet=True)
    result = zoo("export", run, "--web", tmp_path / "bundle", "--batch-sizes", "1,3")
    assert result.exit_code == 0, result.output
    assert f"the passing export {run / 'export' / 'decoder.onnx'}" in result.output
    assert (tmp_path / "bundle" / "decoder.onnx").read_bytes() == (run / "export" / "decoder.onnx").read_bytes()
    result = zoo("export", run, "--web", tmp_path / "bundle2", "--batch-sizes", "1,5")  # not proven at 5: export
    assert result.exit_code == 0, result.output
    assert f"exported from {run}" in result.output


def test_a_bundle_in_the_runs_own_export_folder_keeps_its_decoder_in_place(ort_web, cvae_run, tmp_path):
    run = shutil.copytree(cvae_run, tmp_path / "run")
    export_run(run, run / "export", parts=["decoder"], batch_sizes=(1, 3), quiet=True)
    before = {name: (run / "export" / name).read_bytes() for name in ("decoder.onnx", "decoder.parity.json")}
    result = zoo("export", run, "--web", run / "export", "--batch-sizes", "1,3")
    assert result.exit_code == 0, result.output
    assert f"the passing export {run / 'export' / 'decoder.onnx'}" in result.output
    assert {name: (run / "export" / name).read_bytes() for name in before} == before
    assert {p.name for p in (run / "export").iterdir()} >= {"index.html", "app.js", "model.json", "ort"}


def test_a_file_that_is_not_a_zoo_decoder_gets_one_clear_error(ort_web, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    plain = tmp_path / "plain.onnx"
    model = onnx.load_from_string(onnx.load(str(handmade_decoder(tmp_path / "d.onnx", False)))
                                  .SerializeToString())
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    for path, says in ((text, "is not an ONNX model onnxruntime can load"),
                       (plain, "is an ONNX model but not a cmnist-zoo decoder"),
                       (tmp_path / "nowhere", "does not exist")):
        result = zoo("export", path, "--web", tmp_path / "bundle")
        assert_clean_failure(result, says)
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "bundle").exists()


def test_without_onnxruntime_web_the_error_gives_the_npm_command(tmp_path, monkeypatch):
    monkeypatch.delenv(web.ORT_DIR_ENV, raising=False)
    monkeypatch.setattr(web, "REPOSITORY_WEB", tmp_path / "web")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "package-lock.json").write_text("{}")
    result = zoo("export", handmade_decoder(tmp_path / "d.onnx", True), "--web", tmp_path / "bundle")
    assert_clean_failure(result, f"run `npm ci --prefix {tmp_path / 'web'}`")
    assert result.output.count("\n") == 1
    monkeypatch.setenv(web.ORT_DIR_ENV, str(tmp_path))
    result = zoo("export", tmp_path / "d.onnx", "--web", tmp_path / "bundle")
    assert_clean_failure(result, f"{web.ORT_DIR_ENV}={tmp_path} holds no onnxruntime-web files")


def test_web_takes_no_options_of_the_other_exports(tmp_path):
    (tmp_path / "some-run").mkdir()
    result = zoo("export", tmp_path / "some-run", "--web", tmp_path / "bundle", "--precision", "int8", "--parts",
                 "decoder")
    assert_clean_failure(result, "--parts, --precision cannot go with it")
    decoder = handmade_decoder(tmp_path / "d.onnx", True)
    result = zoo("export", decoder, "--web", tmp_path / "bundle", "--opset", "17", "--batch-sizes", "1,3")
    assert_clean_failure(result, f"the page around {decoder} as it is; --opset, --batch-sizes cannot go with it")
    assert not (tmp_path / "bundle").exists()


def test_a_bundle_of_an_exported_file_keeps_its_parity_report(ort_web, concrete_run, tmp_path):
    export_run(concrete_run, tmp_path / "export", parts=["decoder"], batch_sizes=(1, 3), quiet=True)
    bundle = bundle_of(tmp_path / "export" / "decoder.onnx", tmp_path / "bundle")
    assert (bundle / "decoder.parity.json").read_bytes() == (tmp_path / "export" / "decoder.parity.json").read_bytes()


def test_the_locked_onnxruntime_web_is_the_one_the_exporter_names():
    folder = Path(__file__).resolve().parents[1] / "web"
    package = json.loads((folder / "package.json").read_text())
    lock = json.loads((folder / "package-lock.json").read_text())
    assert package["dependencies"]["onnxruntime-web"] == web.ORT_WEB_VERSION
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == web.ORT_WEB_VERSION
