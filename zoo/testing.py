"""A conformance check any variant can be run through, for the project's tests and for plugin authors' own.

    from cmnist_zoo.testing import check_variant

    def test_my_variant_conforms():
        check_variant("my-variant")

It builds the variant from its default settings, trains one step on a few synthetic images, saves and reloads the
weights, feeds it bad settings, and encodes and decodes odd batch sizes; a failure raises AssertionError (or the
ZooError the zoo itself would show a user) saying what the variant got wrong.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from cmnist_zoo.errors import NoPriorError, ZooError
from cmnist_zoo.model import Autoencoder
from cmnist_zoo.models import build_model
from cmnist_zoo.registry import get_variant

ODD_BATCH = 5
_NOT_A_SETTING = "conformance_check_unknown_setting"
_NONSENSE = "\0not a value of any setting\0"


def synthetic_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic image of each of the 15 characters: float [15, 1, 64, 64] in [0, 1] and labels 0..14."""
    from cmnist_zoo.synthetic import generate

    arrays = generate(writers=1, samples_per_writer=1, seed=0)
    images = torch.from_numpy(arrays["images"]).float().div(255).unsqueeze(1)
    return images, torch.from_numpy(arrays["codes"] - 1)


def check_variant(name: str) -> None:
    """Run every check on the registered variant `name`; raise AssertionError or ZooError on the first failure."""
    get_variant(name)  # an unknown name fails here, listing what is installed
    images, labels = synthetic_batch()
    torch.manual_seed(0)
    model = _build(name)
    check_training_step(name, model, images, labels)
    check_reload(name, model, images, labels)
    check_bad_settings(name)
    check_batch_sizes(name, model, images, labels)
    check_evaluation_metrics(name, model, images, labels)


def _build(name: str) -> Autoencoder:
    model, _ = build_model(name, {}, where="default settings")
    assert isinstance(model.latent_dim, int) and model.latent_dim > 0, \
        f"{name}: latent_dim must be a positive int, not {model.latent_dim!r}"
    assert isinstance(model.num_classes, int) and model.num_classes in (0, 15), \
        f"{name}: num_classes must be 0 (unconditional) or 15 (conditional on the character), not {model.num_classes!r}"
    return model


def _labels_for(model: Autoencoder, labels: torch.Tensor) -> torch.Tensor | None:
    return labels if model.num_classes else None


def check_training_step(name: str, model: Autoencoder, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One optimiser step: a finite scalar loss whose gradient reaches the weights and changes them."""
    model.train()
    terms = model.training_loss(images, labels, 0.0)
    assert isinstance(terms, dict) and "loss" in terms, \
        f"{name}: training_loss must return a dict with a 'loss' entry, got {type(terms).__name__}"
    for key, value in terms.items():
        assert torch.is_tensor(value) and value.dim() == 0, f"{name}: training_loss term {key!r} is not a scalar tensor"
        assert math.isfinite(float(value.detach())), \
            f"{name}: training_loss term {key!r} is {float(value.detach())}"
    before = [p.detach().clone() for p in model.parameters()]
    assert before, f"{name}: the model has no parameters to train"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    changed = any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed, f"{name}: one training step changed no weight (does the loss depend on the parameters?)"
    assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: a training step made weights non-finite"


def check_reload(name: str, model: Autoencoder, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Weights saved and loaded into a fresh model from the same settings give the same codes and images."""
    from cmnist_zoo.checkpoints import load_weights, save_weights

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        save_weights(model, path, name)
        torch.manual_seed(1)  # a fresh model starts from other weights
        reloaded = _build(name)
        load_weights(reloaded, path, name)
    model.eval(), reloaded.eval()
    y = _labels_for(model, labels)
    with torch.no_grad():
        codes = model.encode(images, y)
        assert torch.equal(codes, model.encode(images, y)), \
            f"{name}: encode gives other codes each time in eval mode; it must return the mean, not a random draw"
        again = reloaded.encode(images, y)
        assert torch.equal(codes, again), f"{name}: codes differ after saving and reloading the weights " \
                                          "(is some state not a registered parameter or buffer?)"
        assert torch.equal(model.decode(codes, y), reloaded.decode(codes, y)), \
            f"{name}: decoded images differ after saving and reloading the weights"


def check_bad_settings(name: str) -> None:
    """Unknown settings and values of the wrong kind are refused with a ZooError that names the setting."""
    config_class = get_variant(name).variant.config
    _expect_refusal(name, {_NOT_A_SETTING: 1}, _NOT_A_SETTING)
    for field, info in config_class.model_fields.items():
        if info.annotation in (str, str | None):
            continue  # a setting that takes any text has nothing to refuse
        _expect_refusal(name, {field: _NONSENSE}, field)


def _expect_refusal(name: str, values: dict, field: str) -> None:
    try:
        build_model(name, values, where="bad settings")
    except ZooError as exc:
        assert field in str(exc), f"{name}: the error for the bad setting {field!r} does not name it: {exc}"
        return
    raise AssertionError(f"{name}: settings {values!r} were accepted; the config must refuse unknown keys "
                         "and bad values, naming the setting (subclass cmnist_zoo.config.StrictModel; give each field "
                         "a type and limits)")


def check_batch_sizes(name: str, model: Autoencoder, images: torch.Tensor, labels: torch.Tensor) -> None:
    """In eval mode, batches of one image and of an odd size encode to [B, latent_dim] and decode to [B, 1, 64, 64]
    logits, each image independently of the others in its batch; samples from the prior have the code's shape."""
    model.eval()
    with torch.no_grad():
        y_all = _labels_for(model, labels)
        all_codes = model.encode(images, y_all)
        all_logits = model.decode(all_codes, y_all)
        for size in (1, ODD_BATCH):
            x, y = images[:size], _labels_for(model, labels[:size])
            codes = model.encode(x, y)
            assert tuple(codes.shape) == (size, model.latent_dim), \
                f"{name}: encode gave shape {tuple(codes.shape)} for {size} images; expected {(size, model.latent_dim)}"
            logits = model.decode(codes, y)
            assert tuple(logits.shape) == (size, 1, 64, 64), \
                f"{name}: decode gave shape {tuple(logits.shape)} for {size} codes; expected {(size, 1, 64, 64)}"
            assert torch.isfinite(logits).all(), f"{name}: decode gave non-finite logits"
            assert torch.allclose(codes, all_codes[:size], atol=1e-5) and \
                torch.allclose(logits, all_logits[:size], atol=1e-4), \
                f"{name}: in eval mode an image's code or reconstruction depends on the rest of its batch"
            recon = model.reconstruct(x, y)
            assert recon.min() >= 0 and recon.max() <= 1, f"{name}: reconstruct must give images in [0, 1]"
        try:
            drawn = model.sample_codes(ODD_BATCH, torch.Generator().manual_seed(0))
        except NoPriorError:
            return
        assert tuple(drawn.shape) == (ODD_BATCH, model.latent_dim), \
            f"{name}: sample_codes({ODD_BATCH}) gave shape {tuple(drawn.shape)}"


def check_evaluation_metrics(name: str, model: Autoencoder, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The optional evaluation_metrics gives named finite numbers, as `zoo evaluate` writes them to eval.json."""
    extra = getattr(model, "evaluation_metrics", None)
    if extra is None:
        return
    model.eval()
    metrics = extra(images[:ODD_BATCH], labels[:ODD_BATCH])
    assert isinstance(metrics, dict) and metrics, f"{name}: evaluation_metrics must return a non-empty dict"
    for key, value in metrics.items():
        assert isinstance(key, str) and isinstance(value, float) and math.isfinite(value), \
            f"{name}: evaluation_metrics entry {key!r} = {value!r} is not a finite float"
