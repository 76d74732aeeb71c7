"""Small runs of each benchmark script on synthetic data: the figures are there, labelled, and beside the machine.

Nothing here asserts a speed: these machines are shared, so only the shape and sense of the results are checked.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import inference, quality, training

from conftest import TINY


def read_results(path):
    record = json.loads(path.read_text())
    assert record["machine"]["cpu"] and record["machine"]["usable_cores"] >= 1
    assert {"torch", "numpy", "python"} <= set(record["machine"]["versions"])
    return record


def test_quality_ranks_the_variants_above_pca_and_all_black(tmp_path, concrete_run, capsys):
    out = tmp_path / "quality.json"
    payload = quality.main(["--data", TINY, "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                            "--variants", "vae", "--run", f"concrete={concrete_run}", "--out", str(out)])
    names = [row["name"] for row in payload["rows"]]
    assert sorted(names[:2]) == ["concrete", "vae"] and names[2:] == ["PCA-64", "all black"]
    rows = {row["name"]: row for row in payload["rows"]}
    assert rows["concrete"]["obtained"] == "given" and rows["vae"]["obtained"].startswith("trained here")
    assert rows["vae"]["nll"] > 0 and rows["concrete"]["nll"] is None, "only the vae reports a likelihood bound"
    assert rows["vae"]["frechet_distance"] > 0 and rows["vae"]["sampler"] == "prior"
    assert rows["all black"]["nmse"] == pytest.approx(1.0)
    assert rows["PCA-64"]["reconstruction_accuracy"] > rows["all black"]["reconstruction_accuracy"]
    assert read_results(out)["rows"] == json.loads(json.dumps(payload["rows"]))
    assert "| PCA-64 |" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="--reuse"):
        quality.main(["--data", TINY, "--runs-dir", str(tmp_path / "runs"), "--variants", "vae", "--out", str(out)])


def test_quality_refuses_a_run_of_another_variant(tmp_path, concrete_run):
    with pytest.raises(SystemExit, match="'concrete' run"):
        quality.main(["--data", TINY, "--variants", "vae", "--run", f"vae={concrete_run}",
                      "--out", str(tmp_path / "q.json")])


def test_inference_compares_runtimes_to_eager(tmp_path, concrete_run, capsys):
    out = tmp_path / "inference.json"
    payload = inference.main(["--run", str(concrete_run), "--quick", "--runtimes", "eager,onnx-fp32,onnx-int8",
                              "--out", str(out)])
    cells = {(r["runtime"], r["batch"]): r for r in payload["results"]}
    assert set(cells) == {(name, batch) for name in ("eager", "onnx-fp32", "onnx-int8") for batch in (1, 8)}
    assert all(cells[("eager", batch)]["ratio_to_eager"] == 1.0 for batch in (1, 8))
    assert payload["flops_per_image"] > 1e6 and payload["peak_gflops"]["1"] > 0
    for r in payload["results"]:
        assert r["images_per_s"] == pytest.approx(r["batch"] / (r["latency_ms"] / 1e3))
        assert r["gflops"] == pytest.approx(payload["flops_per_image"] * r["images_per_s"] / 1e9)
    assert read_results(out)["unavailable"] == {}
    assert "onnx-int8" in capsys.readouterr().out


def test_inference_reports_a_runtime_that_cannot_run(tmp_path, concrete_run, monkeypatch):
    import torch

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no working C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    payload = inference.main(["--run", str(concrete_run), "--quick", "--runtimes", "eager,compile",
                              "--out", str(tmp_path / "inference.json")])
    assert "no working C++ compiler" in payload["unavailable"]["compile"]
    assert {r["runtime"] for r in payload["results"]} == {"eager"}
    assert "| compile | unavailable |" in read_results(tmp_path / "inference.json")["table"]


def test_training_measures_the_trainer_against_the_bare_loop(tmp_path):
    out = tmp_path / "training.json"
    payload = training.main(["--data", TINY, "--epochs", "1", "--variants", "concrete", "--out", str(out)])
    (row,) = payload["rows"]
    assert "error" not in row["trainer"] and "error" not in row["bare"], row
    assert row["trainer"]["images"] == row["bare"]["images"] == 600  # the same 4 training writers
    assert row["trainer_images_per_s"] > 0 and row["bare_images_per_s"] > 0 and row["trainer_time_over_bare"] > 0
    assert row["trainer"]["peak_rss_mib"] >= row["trainer"]["rss_before_training_mib"] > 0
    if importlib.util.find_spec("pythae") is None:
        assert row["pythae"] == {"skipped": "pythae is not installed"}
    assert read_results(out)["rows"][0]["variant"] == "concrete"
