"""Training speed and memory: each variant through the zoo's Trainer, against a bare loop on tensors in memory.

    python -m benchmarks.training --data chinese_mnist.zip --epochs 3

The bare loop is the least any trainer must do: the same network, loss, optimiser and batch size, over images already
converted to float tensors, with nothing else. The ratio of the two shows what the zoo's data pipeline and
bookkeeping cost. Each measurement runs in a fresh subprocess, whose peak resident memory (ru_maxrss) is reported, so
one measurement's memory never counts towards another's. When the `pythae` package is installed, its trainer is
timed on the same networks and data, as the library a user would otherwise reach for.

Figures are for the fastest epoch (the first carries one-off costs: allocation, thread pools). The trainer's epoch
is given twice: the training pass alone (comparable with the bare loop) and the whole epoch as `zoo train` runs it
(with the validation loss and the checkpoint).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe_machine, markdown_table, write_results

NAME = "training"
MODES = ("trainer", "bare", "pythae")
RESULT_PREFIX = "RESULT "


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="the data set (a path, or synthetic[:N]); default: $ZOO_DATA, else synthetic")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the fastest counts [3]")
    parser.add_argument("--batch-size", type=int, help="images per step [as `zoo train VARIANT` trains]")
    parser.add_argument("--variants", help="comma-separated variant names (default: every registered variant)")
    parser.add_argument("--threads", type=int, help="torch threads in each measurement [torch's default]")
    parser.add_argument("--out", type=Path, help="the JSON file [benchmarks/results/training.json]")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)  # one measurement, in a subprocess
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def trainer_epochs(args: argparse.Namespace) -> dict[str, Any]:
    """Epoch times through training.start(...).fit(), exactly as `zoo train` trains."""
    from cmnist_zoo import training

    with tempfile.TemporaryDirectory(prefix="zoo-bench-train-") as folder:
        trainer = training.start(args.variant, args.data, {"epochs": args.epochs, "batch_size": args.batch_size},
                                 {}, Path(folder) / "run", quiet=True)
        loaded = peak_rss_mib()
        passes: list[float] = []
        epochs: list[float] = []
        train_epoch = trainer._train_epoch  # timed on its own: the part the bare loop also does

        def timed_train_epoch(epoch: int):
            began = time.perf_counter()
            result = train_epoch(epoch)
            passes.append(time.perf_counter() - began)
            return result

        trainer._train_epoch = timed_train_epoch
        mark = [time.perf_counter()]

        def epoch_done(epoch: int) -> None:
            now = time.perf_counter()
            epochs.append(now - mark[0])
            mark[0] = now

        trainer.on_epoch_end.append(epoch_done)
        mark[0] = time.perf_counter()
        trainer.fit()
        images = len(trainer.split.train)
    return {"images": images, "train_pass_s": passes, "epoch_s": epochs, "rss_before_training_mib": loaded}


def bare_epochs(args: argparse.Namespace) -> dict[str, Any]:
    """The same network, loss, optimiser and batches over float tensors already in memory, and nothing else."""
    import torch

    from cmnist_zoo.data import load_dataset
    from cmnist_zoo.models import build_model
    from cmnist_zoo.splits import make_split

    dataset = load_dataset(args.data, quiet=True)
    split = make_split(dataset, "writer", 0)
    images = torch.from_numpy(dataset.images[split.train]).unsqueeze(1).float().div_(255.0)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(dataset.labels[split.train])
    torch.manual_seed(0)
    model, _ = build_model(args.variant)
    model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loaded = peak_rss_mib()
    passes = []
    for epoch in range(args.epochs):
        began = time.perf_counter()
        order = torch.randperm(len(images))
        for start in range(0, len(order), args.batch_size):
            chunk = order[start:start + args.batch_size]
            if len(chunk) < 2:
                continue
            loss = model.training_loss(images[chunk], labels[chunk], epoch / args.epochs)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        passes.append(time.perf_counter() - began)
    return {"images": len(images), "train_pass_s": passes, "rss_before_training_mib": loaded}


def pythae_epochs(args: argparse.Namespace) -> dict[str, Any]:
    """pythae's BaseTrainer on the zoo's own encoder and decoder: its VAE for models with a Gaussian code
    (`posterior`), its AE for the others; it has no conditional models."""
    import torch
    from pythae.data.datasets import BaseDataset
    from pythae.models import AE, VAE, AEConfig, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from cmnist_zoo.data import load_dataset
    from cmnist_zoo.models import build_model
    from cmnist_zoo.splits import make_split

    torch.manual_seed(0)
    zoo_model, _ = build_model(args.variant)
    if zoo_model.num_classes:
        return {"skipped": "pythae has no conditional models"}
    gaussian = hasattr(zoo_model, "posterior")

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.zoo = zoo_model

        def forward(self, x):
            if gaussian:
                mean, logvar = self.zoo.posterior(x)
                return ModelOutput(embedding=mean, log_covariance=logvar)
            return ModelOutput(embedding=self.zoo.encode(x))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.zoo = zoo_model

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.zoo.decode(z)))

    dataset = load_dataset(args.data, quiet=True)
    split = make_split(dataset, "writer", 0)
    images = torch.from_numpy(dataset.images[split.train]).unsqueeze(1).float().div_(255.0)
    shape = dict(input_dim=(1, 64, 64), latent_dim=zoo_model.latent_dim)
    model = (VAE(VAEConfig(**shape, reconstruction_loss="bce"), Encoder(), Decoder()) if gaussian
             else AE(AEConfig(**shape), Encoder(), Decoder()))
    with tempfile.TemporaryDirectory(prefix="zoo-bench-pythae-") as folder:
        config = BaseTrainerConfig(output_dir=folder, num_epochs=args.epochs, learning_rate=1e-3,
                                   per_device_train_batch_size=args.batch_size, optimizer_cls="Adam", no_cuda=True)
        trainer = BaseTrainer(model, BaseDataset(images, torch.from_numpy(dataset.labels[split.train])),
                              training_config=config)
        loaded = peak_rss_mib()
        passes = []
        train_step = trainer.train_step

        def timed_train_step(epoch: int):
            began = time.perf_counter()
            result = train_step(epoch)
            passes.append(time.perf_counter() - began)
            return result

        trainer.train_step = timed_train_step
        trainer.train()
    return {"images": len(images), "train_pass_s": passes, "rss_before_training_mib": loaded,
            "model": "VAE" if gaussian else "AE"}


def child(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    measure = {"trainer": trainer_epochs, "bare": bare_epochs, "pythae": pythae_epochs}[args.child]
    result = measure(args)
    result["peak_rss_mib"] = peak_rss_mib()
    print(RESULT_PREFIX + json.dumps(result))


def batch_size_of(variant: str, args: argparse.Namespace) -> int:
    """--batch-size, else the batch `zoo train VARIANT` uses: the variant's own default, else the zoo's."""
    from cmnist_zoo.config import TrainSettings
    from cmnist_zoo.registry import get_variant

    return args.batch_size or get_variant(variant).variant.train_defaults.get("batch_size",
                                                                              TrainSettings().batch_size)


def run_child(mode: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.training", "--child", mode, "--variant", variant,
               "--epochs", str(args.epochs), "--batch-size", str(batch_size_of(variant, args))]
    command += ["--data", args.data] if args.data else []
    command += ["--threads", str(args.threads)] if args.threads else []
    print(f"measuring {variant} ({mode})", file=sys.stderr)
    repository = Path(__file__).resolve().parent.parent  # where `-m benchmarks.training` is found
    done = subprocess.run(command, capture_output=True, text=True, cwd=repository)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit status {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def rate(result: dict[str, Any], key: str) -> float | None:
    times = result.get(key)
    return result["images"] / min(times) if times else None


def summarise(variant: str, trainer: dict, bare: dict, pythae: dict) -> dict[str, Any]:
    row = {"variant": variant, "trainer": trainer, "bare": bare, "pythae": pythae,
           "trainer_images_per_s": rate(trainer, "train_pass_s"),
           "trainer_epoch_images_per_s": rate(trainer, "epoch_s"),
           "bare_images_per_s": rate(bare, "train_pass_s"),
           "pythae_images_per_s": rate(pythae, "train_pass_s")}
    if row["trainer_images_per_s"] and row["bare_images_per_s"]:
        row["trainer_time_over_bare"] = row["bare_images_per_s"] / row["trainer_images_per_s"]
        row["epoch_time_over_bare"] = row["bare_images_per_s"] / row["trainer_epoch_images_per_s"]
    return row


def table_of(rows: list[dict[str, Any]]) -> str:
    def number(value, spec):
        return None if value is None else format(value, spec)

    def problem(result):
        return result.get("error") or result.get("skipped")

    lines = []
    for row in rows:
        lines.append([
            row["variant"],
            number(row["bare_images_per_s"], ".0f") or problem(row["bare"]),
            number(row["trainer_images_per_s"], ".0f") or problem(row["trainer"]),
            number(row.get("trainer_time_over_bare"), ".2f"),
            number(row["trainer_epoch_images_per_s"], ".0f"),
            number(row.get("epoch_time_over_bare"), ".2f"),
            number(row["trainer"].get("peak_rss_mib"), ".0f"),
            number(row["bare"].get("peak_rss_mib"), ".0f"),
            number(row["pythae_images_per_s"], ".0f") or problem(row["pythae"]),
        ])
    return markdown_table(["variant", "bare loop img/s", "Trainer img/s (training pass)", "time × bare",
                           "Trainer img/s (whole epoch)", "time × bare", "Trainer peak MiB", "bare peak MiB",
                           "pythae img/s"], lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    from cmnist_zoo.registry import list_variants

    machine = describe_machine()
    registered = [v.name for v in list_variants()]
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else registered
    unknown = [v for v in variants if v not in registered]
    if unknown:
        sys.exit(f"Error: unknown variant {', '.join(unknown)}; registered: {', '.join(registered)}")
    has_pythae = importlib.util.find_spec("pythae") is not None
    if not has_pythae:
        print("pythae is not installed: its trainer is not measured (pip install pythae to compare)",
              file=sys.stderr)
    rows = []
    for variant in variants:
        trainer = run_child("trainer", variant, args)
        bare = run_child("bare", variant, args)
        pythae = run_child("pythae", variant, args) if has_pythae else {"skipped": "pythae is not installed"}
        rows.append(summarise(variant, trainer, bare, pythae))
    batches = ", ".join(f"{v} {batch_size_of(v, args)}" for v in variants)
    notes = [f"Images per second of the fastest of {args.epochs} epochs; batch sizes (as `zoo train` uses them): "
             f"{batches}; "
             "time × bare: the Trainer's time per image over the bare loop's (target ≤ 1.2 for the training pass). "
             "Peak MiB: ru_maxrss of the measuring subprocess (target < 1024).",
             "pythae: " + ("its BaseTrainer on the same networks and data" if has_pythae else "not installed")]
    table = table_of(rows) + "\n\n" + "\n".join(notes)
    payload = {"data": args.data or os.environ.get("ZOO_DATA") or "synthetic", "epochs": args.epochs,
               "batch_sizes": {v: batch_size_of(v, args) for v in variants}, "threads": args.threads, "rows": rows}
    write_results(args.out, NAME, machine, payload, table)
    return payload


if __name__ == "__main__":
    main()
