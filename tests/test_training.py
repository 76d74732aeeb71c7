"""Training, resuming and evaluating through the one interface every variant shares."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from cmnist_zoo import training
from cmnist_zoo.cli import cli
from cmnist_zoo.runs import CHECKPOINT, CONFIG, EVAL, METRICS, MODEL, read_metrics

from conftest import TINY, assert_clean_failure


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_run_directory_holds_everything_promised(concrete_run):
    for name in (CONFIG, MODEL, CHECKPOINT, METRICS, "reconstructions.png", "loss.png"):
        assert (concrete_run / name).stat().st_size > 0, name
    config = json.loads((concrete_run / CONFIG).read_text())
    assert config["variant"] == "concrete"
    assert config["data"]["source"] == TINY and config["data"]["hash"]
    assert config["split"]["kind"] == "writer" and config["split"]["test_writers"]
    assert config["model"]["code_dim"] == 64 and config["train"]["seed"] == 0
    assert {"torch", "cmnist_zoo", "python"} <= set(config["versions"])
    assert [m["epoch"] for m in read_metrics(concrete_run)] == [1]


@pytest.mark.parametrize("args, named", [
    (["--set", "epoch=3"], "unknown setting 'epoch'"),
    (["--set", "model.code_dims=8"], "unknown setting 'code_dims'"),
    (["--set", "model.loss=l1"], "model settings (variant 'concrete'): loss"),
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--batch-size", "1"], "batch_size"),  # batch norm cannot train on one image
    (["--seed", str(2**32)], "seed"),
    (["--set", "model.widths=[-1,8,8]"], "widths.0"),
    (["--set", "device=tpu"], "device"),
])
def test_config_mistakes_are_refused_naming_the_field(tmp_path, args, named):
    result = run_cli("train", "concrete", "--data", TINY, "--out", tmp_path / "run", *args)
    assert_clean_failure(result, named)
    assert not (tmp_path / "run").exists(), "nothing is created for a refused config"


def test_a_variant_trains_with_its_own_defaults_unless_told_otherwise(tmp_path):
    from cmnist_zoo.config import TrainSettings
    from cmnist_zoo.registry import get_variant

    own = get_variant("concrete").variant.train_defaults["batch_size"]
    assert own != TrainSettings().batch_size
    assert training.start("concrete", TINY, {"epochs": 1}, {}, tmp_path / "own", quiet=True).settings.batch_size == own
    told = training.start("concrete", TINY, {"epochs": 1, "batch_size": 16}, {}, tmp_path / "told", quiet=True)
    assert told.settings.batch_size == 16
    assert json.loads((tmp_path / "own" / CONFIG).read_text())["train"]["batch_size"] == own, "the run records it"
    shared = training.start("vae", TINY, {"epochs": 1}, {}, tmp_path / "vae", quiet=True)
    assert shared.settings.batch_size == TrainSettings().batch_size


def test_config_file_is_read_and_checked(tmp_path):
    config = tmp_path / "settings.json"
    config.write_text('{"epochs": 1, "model": {"code_dim": 8, "widths": [8, 8, 8]}, "batch_sise": 3}')
    result = run_cli("train", "concrete", "--data", TINY, "--config", config, "--out", tmp_path / "run")
    assert_clean_failure(result, "unknown setting 'batch_sise'")
    config.write_text("{not json")
    result = run_cli("train", "concrete", "--data", TINY, "--config", config)
    assert_clean_failure(result, "not valid JSON")


def test_unknown_variant_and_wrong_data_path_are_one_line_errors(tmp_path):
    result = run_cli("train", "nope", "--data", TINY)
    assert_clean_failure(result, "unknown variant 'nope'")
    result = run_cli("train", "concrete", "--data", tmp_path / "missing.zip", "--out", tmp_path / "r")
    assert_clean_failure(result, "does not exist")


def test_existing_run_is_never_overwritten(concrete_run):
    before = (concrete_run / MODEL).read_bytes()
    result = run_cli("train", "concrete", "--data", TINY, "--out", concrete_run)
    assert_clean_failure(result, "already holds a run")
    assert (concrete_run / MODEL).read_bytes() == before


def _small(epochs):
    return {"epochs": epochs, "batch_size": 64}, {"code_dim": 8, "widths": [8, 8, 8]}


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    train_values, model_values = _small(3)
    training.start("concrete", TINY, train_values, model_values, tmp_path / "whole", quiet=True).fit()

    trainer = training.start("concrete", TINY, train_values, model_values, tmp_path / "cut", quiet=True)

    def ctrl_c(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    trainer.on_epoch_end.append(ctrl_c)
    with pytest.raises(training.TrainingInterrupted, match="epoch 1 is saved"):
        trainer.fit()
    assert [m["epoch"] for m in read_metrics(tmp_path / "cut")] == [1]
    result = run_cli("train", "--resume", tmp_path / "cut", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)

    for name in (MODEL, CHECKPOINT):
        whole, cut = load_file(tmp_path / "whole" / name), load_file(tmp_path / "cut" / name)
        assert whole.keys() == cut.keys()
        for key in whole:
            assert (whole[key] == cut[key]).all(), f"{name}:{key} differs after resuming"
    assert [m["epoch"] for m in read_metrics(tmp_path / "cut")] == [1, 2, 3]


def test_resume_refuses_new_settings_and_finished_runs(concrete_run):
    result = run_cli("train", "concrete", "--resume", concrete_run)
    assert_clean_failure(result, "only --data, --epochs")
    result = run_cli("train", "--resume", concrete_run)
    assert_clean_failure(result, "already finished")


def test_out_that_is_a_file_or_under_one_is_one_line_and_the_file_is_kept(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    result = run_cli("train", "concrete", "--data", TINY, "--out", taken)
    assert_clean_failure(result, "--out", "is a file")
    result = run_cli("train", "concrete", "--data", TINY, "--out", taken / "run")
    assert_clean_failure(result, f"{taken / 'run'}: Not a directory")
    assert taken.read_text() == "keep me"


def _copy_run(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def test_a_failing_resume_leaves_config_and_metrics_untouched(concrete_run, tmp_path):
    run = _copy_run(concrete_run, tmp_path)
    before = {name: (run / name).read_bytes() for name in (CONFIG, METRICS)}
    (run / CHECKPOINT).write_bytes(b"not a checkpoint")
    assert_clean_failure(run_cli("train", "--resume", run, "--epochs", 5), "checkpoint.safetensors")
    assert_clean_failure(run_cli("train", "--resume", run, "--epochs", 0), "--epochs")
    assert {name: (run / name).read_bytes() for name in (CONFIG, METRICS)} == before


def test_a_run_from_a_cuda_machine_resumes_with_device_cpu(concrete_run, tmp_path):
    run = _copy_run(concrete_run, tmp_path)
    config = json.loads((run / CONFIG).read_text())
    config["train"]["device"] = "cuda"
    (run / CONFIG).write_text(json.dumps(config))
    result = run_cli("train", "--resume", run, "--device", "cpu", "--epochs", 2, "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "on cpu" in result.output
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2]
    saved = json.loads((run / CONFIG).read_text())["train"]
    assert saved["epochs"] == 2 and saved["device"] == "cuda", "the device is where it ran, not part of the run"


def test_a_torn_last_metrics_line_is_dropped_on_resume(concrete_run, tmp_path):
    run = _copy_run(concrete_run, tmp_path)
    whole = (run / METRICS).read_text()
    with open(run / METRICS, "a") as f:
        f.write('{"epoch": 2, "train": {"lo')  # killed mid-append
    assert [m["epoch"] for m in read_metrics(run)] == [1]
    training.resume(run, epochs=2, quiet=True)  # stops short of training
    assert (run / METRICS).read_text() == whole, "the torn line is gone, so the next epoch starts a line of its own"
    (run / METRICS).write_text('{"epoch": 1, "tr\n' + whole)
    config = (run / CONFIG).read_bytes()
    assert_clean_failure(run_cli("train", "--resume", run, "--epochs", 3), "metrics.jsonl line 1")
    assert (run / CONFIG).read_bytes() == config


def test_evaluate_reports_the_model_beside_pca_and_all_black(concrete_run):
    result = run_cli("evaluate", concrete_run, "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((concrete_run / EVAL).read_text())
    for row in ("model", "pca_64", "all_black"):
        assert set(report[row]) >= {"mse", "nmse", "bce", "ssim"}
    assert report["all_black"]["nmse"] == pytest.approx(1.0)
    assert 0 < report["pca_64"]["nmse"] < 1, "PCA-64 beats an all-black guess"
    assert report["test_images"] == 150
    assert "| PCA-64 |" in result.output


def test_weights_from_another_run_of_other_settings_or_variant_are_refused(concrete_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(concrete_run, other)
    config = json.loads((other / CONFIG).read_text())
    config["model"]["code_dim"] = 16
    (other / CONFIG).write_text(json.dumps(config))
    result = run_cli("evaluate", other)
    assert_clean_failure(result, "does not fit a 'concrete' model")
    config["variant"] = "nope"
    (other / CONFIG).write_text(json.dumps(config))
    result = run_cli("evaluate", other)
    assert_clean_failure(result, "unknown variant 'nope'")


def test_incomplete_run_directory_is_explained(concrete_run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(concrete_run, partial)
    (partial / MODEL).unlink()
    result = run_cli("evaluate", partial)
    assert_clean_failure(result, "model.safetensors is missing")
    result = run_cli("evaluate", tmp_path)
    assert_clean_failure(result, "config.json is missing")
    (tmp_path / "notes.txt").write_text("not a run")
    assert_clean_failure(run_cli("evaluate", tmp_path / "notes.txt"), "is a file, not a run directory")


@pytest.mark.parametrize("missing", ["train", "data", "data.hash", "variant"])
def test_a_run_config_without_a_needed_part_is_named(concrete_run, tmp_path, missing):
    run = _copy_run(concrete_run, tmp_path)
    config = json.loads((run / CONFIG).read_text())
    *parents, key = missing.split(".")
    node = config
    for part in parents:
        node = node[part]
    del node[key]
    (run / CONFIG).write_text(json.dumps(config))
    assert_clean_failure(run_cli("evaluate", run, "--no-classifier"), f"lacks {missing!r}")


def test_evaluating_against_different_data_is_refused(concrete_run):
    result = run_cli("evaluate", concrete_run, "--data", "synthetic:5")
    assert_clean_failure(result, "differs from the data this run was trained on")


def test_real_data_smoke_run(real_data, tmp_path):
    trainer = training.start("concrete", real_data, {"epochs": 1, "batch_size": 128}, {}, tmp_path / "real",
                             quiet=True)
    trainer.fit()
    result = run_cli("evaluate", tmp_path / "real", "--quiet", "--no-classifier")
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((tmp_path / "real" / EVAL).read_text())
    assert report["test_images"] == 2250
    assert report["model"]["nmse"] < 1.0, "even a short run must beat an all-black guess"
