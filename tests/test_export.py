"""`zoo export`: every installed variant's decoder and encoder as ONNX, each kept only once proven against PyTorch."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from torch import nn

from cmnist_zoo.charset import CHARACTERS, CODES
from cmnist_zoo.cli import cli
from cmnist_zoo.errors import ZooError
from cmnist_zoo.exporters import export as export_module
from cmnist_zoo.exporters import graphs
from cmnist_zoo.exporters.export import ParityFailed, export_run, file_names
from cmnist_zoo.exporters.parity import TOLERANCES, Tolerance
from cmnist_zoo.runs import MODEL, load_run

from conftest import assert_clean_failure, installed_variants, train_tiny

# Small batches keep the tests quick; 1 and an odd size, neither of them the batch the graphs are traced at.
BATCHES = (1, 3)
PRECISIONS = ("fp32", "fp16", "int8")


def run_of(request, variant: str, tmp_path_factory):
    """The conftest's trained run of a variant where there is one, else a tiny run trained here (third parties)."""
    try:
        return request.getfixturevalue(f"{variant}_run")
    except pytest.FixtureLookupError:
        return train_tiny(variant, tmp_path_factory.mktemp("runs") / variant)


@pytest.fixture(scope="module", params=installed_variants())
def exported(request, tmp_path_factory):
    """Both parts of one variant at every precision (int8 calibrated on fewer images than a user's export)."""
    run = run_of(request, request.param, tmp_path_factory)
    out = tmp_path_factory.mktemp("export") / request.param
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_module, "CALIBRATION_IMAGES", 64)
        return run, out, export_run(run, out, precisions=PRECISIONS, batch_sizes=BATCHES, quiet=True)


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_part_and_precision_passes_parity_at_every_batch_size(exported):
    _, out, results = exported
    assert {(r.part, r.precision) for r in results} == {(p, q) for p in ("decoder", "encoder") for q in PRECISIONS}
    for result in results:
        report = json.loads(result.report_path.read_text())
        assert result.path.is_file() and report["verdict"] == "pass", result.path
        assert report["batch_sizes"] == list(BATCHES)
        for inputs in {r["inputs"] for r in report["results"]}:
            assert sorted(r["batch"] for r in report["results"] if r["inputs"] == inputs) == list(BATCHES)
        judged = [r for r in report["results"] if r["verdict"] != "reported, not judged"]
        assert judged and all(r["verdict"] == "pass" for r in judged)
        assert any(r["inputs"].startswith("random") for r in report["results"])
        assert any(r["inputs"].startswith(("test images", "codes of test images")) for r in judged)
        if result.precision == "fp32":
            assert max(r["max_abs_error"] for r in judged) <= 1e-4
        else:
            assert all(r["psnr_db"] >= TOLERANCES[result.precision].min_psnr_db for r in judged)


def test_each_file_is_self_contained_and_passes_the_onnx_checks(exported):
    _, out, results = exported
    expected = {name for r in results for name in (r.path.name, r.report_path.name)}
    assert {p.name for p in out.iterdir()} == expected, "no side files, temporary files or failure reports"
    for result in results:
        onnx.checker.check_model(str(result.path), full_check=True)
        model = onnx.shape_inference.infer_shapes(onnx.load(str(result.path)), check_type=True, strict_mode=True)
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        for value in [*model.graph.input, *model.graph.output]:
            assert value.type.tensor_type.shape.dim[0].dim_param, f"{result.path.name}: {value.name} has a fixed batch"


def test_metadata_holds_what_the_runtime_needs(exported):
    run_dir, _, results = exported
    model = load_run(run_dir).model
    run_hash = hashlib.sha256((run_dir / MODEL).read_bytes()).hexdigest()
    for result in results:
        meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
        assert meta["format"] == "cmnist-zoo-onnx/1"
        assert (meta["part"], meta["precision"]) == (result.part, result.precision)
        assert meta["variant"] == load_run(run_dir).variant
        assert int(meta["latent_dim"]) == model.latent_dim and int(meta["num_classes"]) == model.num_classes
        assert json.loads(meta["image_shape"]) == [1, 64, 64] and json.loads(meta["image_value_range"]) == [0, 1]
        assert meta["run_sha256"] == run_hash and meta["zoo_version"]
        if model.num_classes:
            assert json.loads(meta["class_codes"]) == list(CODES)
            assert json.loads(meta["class_characters"]) == list(CHARACTERS)
        if result.part == "decoder":
            expected = ("class_mixture" if model.class_mixture_components else
                        "standard_normal" if model.standard_normal_prior else "fitted_gaussian")
            assert meta["prior"] == expected


def test_the_graphs_run_at_a_batch_size_never_tried(exported):
    run_dir, _, results = exported
    model = load_run(run_dir).model
    for result in results:
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        feed = {name: tensor.numpy() for name, tensor in graphs.example_inputs(model, result.part, 11).items()}
        (output,) = session.run(None, feed)
        assert output.shape[0] == 11


class _FixedToExampleBatch(nn.Module):
    """Names its batch dynamic yet reshapes to the traced batch inside: the trap a proof by running must catch."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph

    def forward(self, first, *rest):
        return self.graph(first.reshape(graphs.EXAMPLE_BATCH, *first.shape[1:]), *rest)


def _exporter_that_scales_a_weight(real):
    def export(graph, inputs, output, opset):
        model = real(graph, inputs, output, opset)
        weight = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.1, weight.name))
        return model
    return export


def _exporter_fixed_to_the_example_batch(real):
    return lambda graph, inputs, output, opset: real(_FixedToExampleBatch(graph), inputs, output, opset)


@pytest.mark.parametrize("spoil", [_exporter_that_scales_a_weight, _exporter_fixed_to_the_example_batch])
def test_a_graph_that_disagrees_is_refused_and_not_kept(concrete_run, tmp_path, monkeypatch, spoil):
    real = graphs.EXPORTERS["torchscript"]
    monkeypatch.setattr(graphs, "EXPORTERS", {"torchscript": spoil(real)})
    result = zoo("export", concrete_run, "--out", tmp_path, "--parts", "decoder", "--batch-sizes", "1,3")
    assert_clean_failure(result, "worst input")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "worst input" in errors[0]
    assert "batch 1" in errors[0] or "batch 3" in errors[0]
    assert {p.name for p in tmp_path.iterdir()} == {"decoder.parity-failed.json"}
    report = json.loads((tmp_path / "decoder.parity-failed.json").read_text())
    assert report["verdict"] == "fail" and report["worst"]["item"] in errors[0]


def test_a_tolerance_of_zero_fails_fp32(concrete_run, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "fp32", Tolerance(atol=0.0, rtol=0.0))
    with pytest.raises(ParityFailed, match="worst input"):
        export_run(concrete_run, tmp_path, parts=["encoder"], batch_sizes=BATCHES, quiet=True)
    assert not (tmp_path / "encoder.onnx").exists() and not (tmp_path / "encoder.parity.json").exists()


def test_a_failed_export_keeps_an_earlier_good_one_as_it_was(concrete_run, tmp_path, monkeypatch):
    export_run(concrete_run, tmp_path, parts=["decoder"], batch_sizes=(1,), quiet=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setitem(TOLERANCES, "fp32", Tolerance(atol=0.0, rtol=0.0))
    with pytest.raises(ParityFailed):
        export_run(concrete_run, tmp_path, parts=["decoder"], batch_sizes=(1,), quiet=True)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after.pop(file_names("decoder", "fp32")[2])
    assert after == before


@pytest.mark.parametrize("args, named", [
    (["--precision", "fp8"], "unknown precision 'fp8'"),
    (["--parts", "decoder,head"], "unknown part 'head'"),
    (["--opset", "9"], "--opset 9"),
    (["--batch-sizes", "1,x"], "--batch-sizes"),
    (["--batch-sizes", "0"], "batch sizes"),
    (["--batch-sizes", "1,100000000"], "from 1 to 4096"),
])
def test_bad_options_are_refused_in_one_line(concrete_run, tmp_path, args, named):
    result = zoo("export", concrete_run, "--out", tmp_path / "out", *args)
    assert_clean_failure(result, named)
    assert result.output.startswith("Error:")
    assert not (tmp_path / "out").exists()


def test_a_missing_run_is_refused(tmp_path):
    with pytest.raises(ZooError, match="does not exist"):
        export_run(tmp_path / "nowhere", tmp_path / "out")


def test_int8_calibrates_on_a_training_split_smaller_than_its_sample(tmp_path):
    from cmnist_zoo import training

    # 4 writers leave 300 training images: fewer than the 512 calibration images, and not a whole number of batches
    run = training.start("concrete", "synthetic:4", {"epochs": 1}, {}, tmp_path / "run", quiet=True).fit()
    result = zoo("export", run, "--parts", "decoder", "--precision", "int8", "--batch-sizes", "1,3")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (run / "export" / "decoder.int8.onnx").is_file()
