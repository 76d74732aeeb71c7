"""`zoo export --web`: a folder of static files in which a web page draws with a run's decoder, via onnxruntime-web.

The bundle holds the page (index.html, app.js, style.css, shipped in exporters/web/), the decoder as decoder.onnx
(with its parity report, decoder.parity.json, when there is one), model.json and onnxruntime-web under ort/. Any
static file server can serve it; it needs no Python and no network. model.json is the decoder's ONNX metadata as it is in the file: onnxruntime-web's
InferenceSession exposes input and output names but not a model's metadata_props, and the page needs them (latent
size, classes, image shape, prior).

onnxruntime-web comes from the npm registry, locked by web/package.json and web/package-lock.json in the repository:
`npm ci --prefix web` installs it into web/node_modules, where this module finds it; $ZOO_ORT_WEB_DIR names another
copy (the onnxruntime-web package folder or its dist/).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from cmnist_zoo.errors import ZooError
from cmnist_zoo.exporters.runtime import Decoder, RuntimeInputError
from cmnist_zoo.runs import read_run_config

ORT_WEB_VERSION = "1.31.1"  # as locked in web/package-lock.json
ORT_DIR_ENV = "ZOO_ORT_WEB_DIR"
REPOSITORY_WEB = Path(__file__).resolve().parents[1] / "web"
# ort.min.js runs graphs on WebAssembly, and on WebGPU where the browser has it; both load this one .mjs/.wasm pair.
ORT_FILES = ("ort.min.js", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm")
PAGE_FILES = ("index.html", "app.js", "style.css")
DECODER, DECODER_REPORT, MODEL_INFO, ORT_FOLDER = "decoder.onnx", "decoder.parity.json", "model.json", "ort"


@dataclass
class WebBundle:
    folder: Path
    decoder: Path
    origin: str  # where decoder.onnx came from, in words


def _has_ort_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ORT_FILES)


def ort_web_dist() -> Path:
    """The folder with onnxruntime-web's dist files, or a ZooError that says the command that installs them."""
    configured = os.environ.get(ORT_DIR_ENV)
    if configured:
        for folder in (Path(configured), Path(configured) / "dist"):
            if _has_ort_files(folder):
                return folder
        raise ZooError(f"{ORT_DIR_ENV}={configured} holds no onnxruntime-web files ({', '.join(ORT_FILES)}), "
                       f"neither in it nor in its dist/; point it at node_modules/onnxruntime-web after "
                       f"`npm install onnxruntime-web@{ORT_WEB_VERSION}`, or unset it")
    dist = REPOSITORY_WEB / "node_modules" / "onnxruntime-web" / "dist"
    if _has_ort_files(dist):
        return dist
    if (REPOSITORY_WEB / "package-lock.json").is_file():
        how = f"run `npm ci --prefix {REPOSITORY_WEB}`"
    else:  # installed without the repository
        how = (f"run `npm install onnxruntime-web@{ORT_WEB_VERSION}` in a folder of your choice and set "
               f"{ORT_DIR_ENV} to its node_modules/onnxruntime-web")
    raise ZooError(f"onnxruntime-web is not installed, and the web page needs it: {how}, then run this command again")


def open_decoder(path: Path) -> Decoder:
    try:
        return Decoder(path, providers=["CPUExecutionProvider"])
    except RuntimeInputError as exc:
        raise ZooError(f"{exc}") from None


def _reusable_export(run_dir: Path, opset: int, batch_sizes: Sequence[int]) -> Path | None:
    """RUN_DIR/export/decoder.onnx when it passed its parity check for the run's present weights, the same opset and
    at least the batch sizes asked for; None otherwise."""
    from cmnist_zoo.runs import sha256_of
    from cmnist_zoo.runs import MODEL

    decoder, report_path = run_dir / "export" / DECODER, run_dir / "export" / DECODER_REPORT
    if not (decoder.is_file() and report_path.is_file() and (run_dir / MODEL).is_file()):
        return None
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        proven = (report["verdict"] == "pass" and report["precision"] == "fp32" and report["opset"] == opset
                  and set(batch_sizes) <= set(report["batch_sizes"]))
    except (ValueError, KeyError, TypeError):
        return None
    return decoder if proven and report.get("run_sha256") == sha256_of(run_dir / MODEL) else None


def place_decoder(source: Path, folder: Path, opset: int | None, data: str | None, batch_sizes: Sequence[int],
                  quiet: bool) -> str:
    """Put the decoder at folder/decoder.onnx: the exported file given (as it is, with its parity report when one
    lies beside it), the run's passing fp32 export, or a fresh fp32 export of the run (proven by its parity check);
    says which. Only the last two need torch."""
    target = folder / DECODER
    if source.is_file():
        report = source.with_name(f"{source.stem}.parity.json")
        for given, placed in ((source, target), (report, folder / DECODER_REPORT)):
            if given.is_file() and given.resolve() != placed.resolve():
                shutil.copyfile(given, placed)
        return f"copied from {source}"
    from cmnist_zoo.exporters.export import DEFAULT_OPSET, export_run

    opset = DEFAULT_OPSET if opset is None else opset
    reusable = _reusable_export(source, opset, batch_sizes) if source.is_dir() else None
    if reusable is not None:
        for name in (DECODER, DECODER_REPORT):
            if reusable.with_name(name).resolve() != (folder / name).resolve():  # --web RUN_DIR/export: in place
                shutil.copyfile(reusable.with_name(name), folder / name)
        return f"the passing export {reusable}"
    export_run(source, folder, parts=["decoder"], precisions=["fp32"], opset=opset, data=data,
               batch_sizes=batch_sizes, quiet=quiet)
    return f"exported from {source}"


def export_web(source: Path, out: Path, opset: int | None = None, data: str | None = None,
               batch_sizes: Sequence[int] = (1, 7, 256), quiet: bool = False) -> WebBundle:
    """Write the web bundle for a run directory (its decoder exported, or its passing export reused) or for an
    exported decoder file."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise ZooError(f"{source} does not exist; give a run directory or a decoder exported by `zoo export`")
    if out.exists() and not out.is_dir():
        raise ZooError(f"--web {out}: a file of that name exists; give a folder")
    dist = ort_web_dist()  # before the export, which takes a while, so a missing install is said at once
    if source.is_file():
        open_decoder(source)  # a clear error for a file that is not a zoo decoder, before anything is written
    else:
        read_run_config(source)  # likewise for a folder that is not a run
    out.mkdir(parents=True, exist_ok=True)
    origin = place_decoder(source, out, opset, data, batch_sizes, quiet)
    decoder = open_decoder(out / DECODER)
    (out / MODEL_INFO).write_text(json.dumps(decoder.metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    page = resources.files("cmnist_zoo.exporters") / "web"
    for name in PAGE_FILES:
        (out / name).write_bytes((page / name).read_bytes())
    (out / ORT_FOLDER).mkdir(exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(dist / name, out / ORT_FOLDER / name)
    return WebBundle(out, out / DECODER, origin)
