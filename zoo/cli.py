"""The `zoo` command line. Heavy modules (torch) are imported inside commands so `zoo --help` and `zoo list` stay quick.

Every problem a user can fix ends as one `Error: ...` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cmnist_zoo import __version__
from cmnist_zoo.errors import ZooError

EXIT_INTERRUPTED = 130


class ZooGroup(click.Group):
    """Turns the project's own errors into click's one-line error and exit status."""

    def invoke(self, ctx):
        from cmnist_zoo.config import ValidationError, describe_errors

        try:
            return super().invoke(ctx)
        except ZooError as exc:
            raise click.ClickException(str(exc)) from None
        except ValidationError as exc:
            raise click.ClickException(describe_errors(exc, "settings")) from None
        except Exception as exc:
            interrupted = getattr(sys.modules.get("cmnist_zoo.training"), "TrainingInterrupted", None)
            if interrupted is not None and isinstance(exc, interrupted):
                click.echo(str(exc), err=True)
                ctx.exit(EXIT_INTERRUPTED)
            raise


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zoo")
def cli():
    """A zoo of autoencoders for handwritten Chinese numerals (Chinese MNIST).

    Data comes from --data PATH (the Chinese MNIST zip or its unpacked folder), else the ZOO_DATA environment
    variable, else a built-in synthetic stand-in.
    """


DATA_OPTION = click.option("--data", metavar="PATH|synthetic",
                           help="Chinese MNIST zip or folder; default: $ZOO_DATA, else the synthetic stand-in.")


@cli.command("list")
@click.option("--schema", is_flag=True, help="Also show each variant's settings (for --set model.KEY=VALUE).")
@click.argument("pattern", default="*")
def list_command(schema: bool, pattern: str):
    """List the installed variants and the plugins that provide them (PATTERN: a wildcard such as 'c*')."""
    from cmnist_zoo.registry import get_registry

    registry = get_registry()
    variants = registry.list(pattern)
    width = max([len(v.name) for v in variants] + [7])
    for v in variants:
        origin = f"{v.distribution} {v.version}".strip() or "(registered in code)"
        click.echo(f"{v.name:<{width}}  {v.variant.description}  [plugin {v.plugin}, {origin}]")
        if schema:
            click.echo(_schema_lines(v.variant.config))
    if not variants:
        click.echo(f"no variant matches {pattern!r}")
    for failure in registry.failures:
        click.echo(f"! plugin {failure.plugin} ({failure.distribution or 'unknown distribution'}) not loaded: "
                   f"{failure.reason}", err=True)


def _type_name(annotation) -> str:
    from typing import Literal, get_args, get_origin

    if get_origin(annotation) is Literal:
        return "|".join(str(a) for a in get_args(annotation))
    if get_origin(annotation) is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def _schema_lines(config_class) -> str:
    lines = []
    for name, field in config_class.model_fields.items():
        kind = _type_name(field.annotation)
        lines.append(f"    model.{name}: {kind} = {field.default!r}  {field.description or ''}".rstrip())
    return "\n".join(lines) or "    (no settings)"


@cli.command()
@click.argument("variant", required=False)
@DATA_OPTION
@click.option("--epochs", type=int, help="Passes over the training images [20].")
@click.option("--batch-size", type=int, help="Images per step [128].")
@click.option("--lr", type=float, help="Adam learning rate [1e-3].")
@click.option("--seed", type=int, help="Seeds the split, the weights and the batch order [0].")
@click.option("--split", type=click.Choice(["writer", "image"]),
              help="writer: 70/15/15 of the writers [default]; image: the study's random 70/30 of the images.")
@click.option("--device", help="auto, cpu or cuda [auto].")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory [runs/VARIANT-TIMESTAMP].")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="JSON file of settings: training keys and a 'model' object.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set epochs=5 or --set model.loss=mse (repeatable).")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Continue an interrupted run from its last complete epoch.")
@click.option("--quiet", is_flag=True, help="No progress bars or epoch lines.")
def train(variant, data, epochs, batch_size, lr, seed, split, device, out, config_file, assignments, resume, quiet):
    """Train VARIANT (see `zoo list`) and write a run directory.

    The run directory gets config.json, model.safetensors (best on validation), checkpoint.safetensors (last
    epoch, for --resume), metrics.jsonl, reconstructions.png and loss.png. Ctrl-C keeps the last complete epoch.
    """
    from cmnist_zoo import training
    from cmnist_zoo.config import merge_settings, read_json_file

    if resume:
        if variant or config_file or assignments or any(v is not None for v in (batch_size, lr, seed, split, device,
                                                                                out)):
            raise ZooError("--resume continues a run with its own settings; only --data, --epochs and --quiet "
                           "may be given with it")
        trainer = training.resume(resume, data, epochs, quiet)
    else:
        if not variant:
            raise ZooError("name a variant to train (see `zoo list`), or pass --resume RUN_DIR")
        values = read_json_file(config_file, "config file") if config_file else {}
        values = merge_settings(values, list(assignments))
        model_values = values.pop("model", {})
        if not isinstance(model_values, dict):
            raise ZooError("'model' settings must be a JSON object of the variant's settings")
        flags = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "split": split,
                 "device": device}
        values.update({k: v for k, v in flags.items() if v is not None})
        trainer = training.start(variant, data, values, model_values, out, quiet)
    click.echo(f"training {trainer.variant} into {trainer.run_dir} on {trainer.device} "
               f"({len(trainer.split.train)} train / {len(trainer.split.val)} val / {len(trainer.split.test)} test "
               f"images, {trainer.settings.split} split)", err=True)
    run_dir = trainer.fit()
    click.echo(f"done: {run_dir} (evaluate it with `zoo evaluate {run_dir}`)")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@DATA_OPTION
@click.option("--quiet", is_flag=True, help="Print nothing but the table.")
def evaluate(run_dir, data, quiet):
    """Evaluate RUN_DIR on its test images; print the figures and write RUN_DIR/eval.json.

    Reports MSE, NMSE (MSE over that of an all-black prediction), BCE and SSIM, for the model and for PCA with as
    many components as the model's code, fitted on the same training images.
    """
    from cmnist_zoo.evaluation import evaluate_run, format_report

    report = evaluate_run(run_dir, data, quiet)
    click.echo(format_report(report))


def main():
    cli(prog_name="zoo")


if __name__ == "__main__":
    main()
