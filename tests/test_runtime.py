"""The torch-free runtime: an exported decoder gives PyTorch's images, reads all it needs from the file, and says
plainly what is wrong with a bad file or input."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from cmnist_zoo.charset import CHARACTERS, CODES
from cmnist_zoo.cli import cli
from cmnist_zoo.exporters import runtime
from cmnist_zoo.exporters.export import export_run
from cmnist_zoo.exporters.runtime import Decoder, RuntimeInputError, draw_latents, to_uint8
from cmnist_zoo.runs import load_run
from cmnist_zoo.sampling import fit_training_codes

from conftest import assert_clean_failure, installed_variants
from test_export import run_of

SNIPPET_PATH = "runs/cvae/export/decoder.onnx"


@pytest.fixture(scope="module")
def decoders(request, tmp_path_factory):
    """variant -> (run directory, its exported fp32 decoder), exported on first use."""
    made = {}

    def get(variant: str):
        if variant not in made:
            run = run_of(request, variant, tmp_path_factory)
            out = tmp_path_factory.mktemp("decoder") / variant
            export_run(run, out, parts=["decoder"], batch_sizes=(1, 3), quiet=True)
            made[variant] = run, out / "decoder.onnx"
        return made[variant]
    return get


def zoo(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("variant", installed_variants())
def test_runtime_images_equal_pytorch_for_the_same_latents(decoders, variant):
    run_dir, path = decoders(variant)
    model = load_run(run_dir).model
    decoder = Decoder(path)
    latents = draw_latents(6, decoder.latent_dim, seed=5)
    codes = [1, 8, 15, 2, 8, 11] if decoder.conditional else None
    labels = torch.tensor(codes) - 1 if codes else None
    expected = to_uint8(model.generate(torch.from_numpy(latents), labels)[:, 0].numpy())
    got = to_uint8(decoder.decode(latents, codes))
    assert got.shape == (6, 64, 64) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_the_runtime_never_imports_torch(decoders):
    _, path = decoders("concrete")
    code = textwrap.dedent(f"""
        import sys
        from cmnist_zoo.exporters.runtime import Decoder
        decoder = Decoder({str(path)!r})
        images = decoder.sample(3, seed=0)
        assert images.shape == (3, 64, 64), images.shape
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
        print("torch modules:", loaded)
        assert not loaded
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zoo_sample_onnx_never_imports_torch(decoders, tmp_path):
    _, path = decoders("cvae")
    out = tmp_path / "sevens.png"
    code = textwrap.dedent(f"""
        import sys
        from cmnist_zoo.cli import main
        sys.argv = ["zoo", "sample", "--onnx", {str(path)!r}, "--label", "七", "--out", {str(out)!r}]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
        assert not loaded, loaded
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.stat().st_size > 0


def test_the_embedding_snippet_in_the_docstring_works(decoders, tmp_path):
    """The dozen lines the README shows, run as written (only the path changed) in a process without torch."""
    _, path = decoders("cvae")
    doc = inspect.getdoc(runtime)
    start = doc.index("    import numpy as np")
    snippet = textwrap.dedent(doc[start:doc.index("\n\n", doc.index("mean_image", start))])
    assert SNIPPET_PATH in snippet
    program = snippet.replace(SNIPPET_PATH, str(path)) + "\nimport sys\nassert 'torch' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sevens.png").stat().st_size > 0


def test_sample_repeats_by_seed_and_draws_the_label_asked_for(decoders):
    run_dir, path = decoders("cvae")
    decoder = Decoder(path)
    first, again, other = decoder.sample(4, "七", seed=1), decoder.sample(4, 8, seed=1), decoder.sample(4, "七", seed=2)
    assert first.shape == (4, 64, 64) and first.dtype == np.uint8
    assert np.array_equal(first, again), "a character and its code are the same label"
    assert not np.array_equal(first, other)
    model = load_run(run_dir).model
    latents = torch.from_numpy(decoder.mixture.draw(np.full(4, 7), seed=1))  # cvae samples its fitted mixture
    pytorch = to_uint8(model.generate(latents, torch.full((4,), 7))[:, 0].numpy())
    assert np.abs(first.astype(int) - pytorch.astype(int)).max() <= 1


def test_a_model_without_prior_samples_from_the_gaussian_zoo_sample_fits(decoders):
    run_dir, path = decoders("concrete")
    decoder = Decoder(path)
    assert decoder.prior == "fitted_gaussian"
    fitted = fit_training_codes(load_run(run_dir), None)
    mean, std = (np.array(json.loads(decoder.metadata[key])) for key in ("prior_mean", "prior_std"))
    np.testing.assert_allclose(mean, fitted.mean.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(std, fitted.std.numpy(), rtol=1e-6, atol=1e-7)
    latents = decoder.prior_latents(4000, seed=0)
    np.testing.assert_allclose(latents.mean(0), mean, atol=float(5 * std.max() / np.sqrt(4000)) + 1e-7)


def test_zoo_sample_onnx_writes_a_grid(decoders, tmp_path):
    _, path = decoders("cvae")
    out = tmp_path / "grid.png"
    result = zoo("sample", "--onnx", path, "--n", 2, "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    ([], "give either RUN_DIR or --onnx FILE"),
    (["some-run", "--onnx", "decoder.onnx"], "give either RUN_DIR or --onnx FILE"),
    (["--onnx", "decoder.onnx", "--data", "synthetic:6"], "--data is not used with --onnx"),
])
def test_zoo_sample_wants_a_run_or_an_onnx_file(args, message):
    assert_clean_failure(zoo("sample", *args), message)


def _onnx_without_zoo_metadata(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: (p.write_text("not a model at all"), p)[1], "is not an ONNX model onnxruntime can load"),
    (_onnx_without_zoo_metadata, "is an ONNX model but not a cmnist-zoo decoder (no cmnist-zoo metadata)"),
    (lambda p: p.with_name("missing.onnx"), "does not exist"),
])
def test_a_file_that_is_no_zoo_decoder_gets_one_clear_message(tmp_path, make, message):
    path = make(tmp_path / "model.onnx")
    with pytest.raises(RuntimeInputError) as raised:
        Decoder(path)
    assert message in str(raised.value)
    result = zoo("sample", "--onnx", path)
    assert_clean_failure(result, message)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0]


def test_an_encoder_is_not_taken_for_a_decoder(concrete_run, tmp_path):
    export_run(concrete_run, tmp_path, parts=["encoder"], batch_sizes=(1,), quiet=True)
    with pytest.raises(RuntimeInputError, match="is a cmnist-zoo encoder, not a decoder"):
        Decoder(tmp_path / "encoder.onnx")


def edited(path, out, metadata=None, symbolic_latent=False):
    """A copy of an exported decoder at `out` with some metadata values replaced (None deletes the key), and its
    latent input's size made symbolic if asked (so onnxruntime no longer knows it before running)."""
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    del model.metadata_props[:]
    helper.set_model_props(model, meta)
    if symbolic_latent:
        latent = next(i for i in model.graph.input if i.name == runtime.LATENT_INPUT)
        latent.type.tensor_type.shape.dim[1].dim_param = "latent_dim"
    onnx.save(model, str(out))
    return out


def _meta(path, key):
    return next(p.value for p in onnx.load(str(path)).metadata_props if p.key == key)


@pytest.mark.parametrize("variant, changes, message", [
    ("cvae", lambda p: {"latent_dim": str(int(_meta(p, "latent_dim")) + 1)},
     "latent_dim is {wrong} but the graph's 'latent' input takes {dim}"),
    ("concrete", lambda p: {"num_classes": "15", "class_codes": json.dumps(list(CODES)),
                            "class_characters": json.dumps(list(CHARACTERS), ensure_ascii=False)},
     "num_classes is 15 but the graph has no 'label' input"),
    ("cvae", lambda p: {"num_classes": "0", "class_codes": None, "class_characters": None},
     "num_classes is 0 but the graph takes a 'label' input"),
    ("cvae", lambda p: {"class_characters": json.dumps(list("零一二"), ensure_ascii=False)},
     "class_characters has 3 entries for num_classes 15"),
    ("concrete", lambda p: {"prior_std": json.dumps(json.loads(_meta(p, "prior_std"))[:-1])},
     "prior_std has shape [{short}], not [{dim}] (latent_dim)"),
], ids=["latent_dim", "label-missing", "label-unexpected", "class_characters", "prior_std"])
def test_metadata_that_does_not_match_the_graph_is_refused(decoders, tmp_path, variant, changes, message):
    _, path = decoders(variant)
    dim = int(_meta(path, "latent_dim"))
    bad = edited(path, tmp_path / "edited.onnx", changes(path))
    message = message.format(dim=dim, wrong=dim + 1, short=dim - 1)
    with pytest.raises(RuntimeInputError) as raised:
        Decoder(bad)
    assert str(bad) in str(raised.value) and "does not match its graph" in str(raised.value)
    assert message in str(raised.value)
    out = tmp_path / "grid.png"
    assert_clean_failure(zoo("sample", "--onnx", bad, "--label", "七", "--out", out), message)
    assert not out.exists(), "no grid of a class the graph never saw"


def test_an_onnxruntime_failure_while_decoding_is_a_runtime_input_error(decoders, tmp_path):
    _, path = decoders("concrete")
    dim = int(_meta(path, "latent_dim"))
    bad = edited(path, tmp_path / "edited.onnx", {"latent_dim": str(dim + 1), "prior": "standard_normal"},
                 symbolic_latent=True)
    decoder = Decoder(bad)  # the graph no longer says its latent size, so the metadata cannot be checked against it
    with pytest.raises(RuntimeInputError, match=f"{bad}: onnxruntime could not run the decoder on 2 latents"):
        decoder.decode(np.zeros((2, dim + 1), np.float32))
    assert_clean_failure(zoo("sample", "--onnx", bad, "--out", tmp_path / "grid.png"), "onnxruntime could not run")


@pytest.mark.parametrize("shape_of, message", [
    (lambda dim: (2, dim + 1), "latents must have shape [n, {dim}] for the cvae decoder; got [2, {wrong}]"),
    (lambda dim: (dim,), "latents must have shape [n, {dim}] for the cvae decoder; got [{dim}]"),
])
def test_latents_of_the_wrong_shape_are_refused(decoders, shape_of, message):
    decoder = Decoder(decoders("cvae")[1])
    shape = shape_of(decoder.latent_dim)
    with pytest.raises(RuntimeInputError) as raised:
        decoder.decode(np.zeros(shape, np.float32), [1] * shape[0])
    assert str(raised.value) == message.format(dim=decoder.latent_dim, wrong=decoder.latent_dim + 1)


def test_latents_that_are_not_numbers_are_refused(decoders):
    decoder = Decoder(decoders("cvae")[1])
    with pytest.raises(RuntimeInputError, match="latents must be real numbers"):
        decoder.decode(np.full((1, decoder.latent_dim), "a"), [1])


@pytest.mark.parametrize("variant, labels, message", [
    ("cvae", [16], "label 16 is not one the cvae decoder knows"),
    ("cvae", ["x"], "label 'x' is not one the cvae decoder knows"),
    ("cvae", None, "the cvae decoder is conditional"),
    ("cvae", [1, 2], "got 2 labels for 1 latents"),
    ("concrete", [3], "the concrete decoder is not conditional"),
])
def test_labels_the_decoder_does_not_know_are_refused(decoders, variant, labels, message):
    decoder = Decoder(decoders(variant)[1])
    with pytest.raises(RuntimeInputError, match=message):
        decoder.decode(np.zeros((1, decoder.latent_dim), np.float32), labels)


def test_cuda_is_preferred_when_onnxruntime_has_it(monkeypatch):
    monkeypatch.setattr(runtime.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runtime.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert runtime.default_providers() == ["CPUExecutionProvider"]
