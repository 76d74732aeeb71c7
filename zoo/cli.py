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
        except OSError as exc:  # a path the user named is unusable: a file where a folder goes, no permission, ...
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
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

    `zoo train` takes its data from --data PATH (the Chinese MNIST zip or its unpacked folder), else the ZOO_DATA
    environment variable, else a built-in synthetic stand-in. A run remembers its data, so evaluate, sample and
    export need --data only when it has moved.
    """


DATA_OPTION = click.option("--data", metavar="PATH|synthetic",
                           help="Chinese MNIST zip or folder; default: $ZOO_DATA, else the synthetic stand-in.")
# A trained run remembers its data (and its content hash); --data only says where that data is now.
RUN_DATA_OPTION = click.option("--data", metavar="PATH|synthetic",
                               help="Where the run's data is now, if it moved [where it was trained]; it must "
                                    "be the same data.")


@cli.command("list")
@click.option("--schema", is_flag=True,
              help="Also show each variant's settings (--set model.KEY=VALUE) and the training settings every "
                   "variant shares (--set KEY=VALUE).")
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
            if v.variant.train_defaults:
                own = ", ".join(f"{k}={val!r}" for k, val in v.variant.train_defaults.items())
                click.echo(f"    trains by default with {own} (in place of the shared defaults below)")
    if not variants:
        click.echo(f"no variant matches {pattern!r}")
    if schema:
        from cmnist_zoo.config import TrainSettings

        click.echo(f"training settings, shared by every variant:\n{_schema_lines(TrainSettings, prefix='')}")
    for failure in registry.failures:
        click.echo(f"! plugin {failure.plugin} ({failure.distribution or 'unknown distribution'}) not loaded: "
                   f"{failure.reason}", err=True)


def _type_name(annotation) -> str:
    """A settings type as a user would write it: int, bce|mse, tuple[int, int, int]."""
    import types
    from typing import Annotated, Literal, Union, get_args, get_origin

    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _limits(metadata) -> str:
    """A field's numeric limits as a range: (1..4096), (> 0, ..1.0)."""
    bounds = {key: getattr(m, key) for m in metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)}
    if not bounds:
        return ""
    low = f"{bounds['ge']}" if "ge" in bounds else f"> {bounds['gt']}, " if "gt" in bounds else ""
    high = f"..{bounds['le']}" if "le" in bounds else f"..< {bounds['lt']}" if "lt" in bounds else ".."
    return f" ({low}{high})"


def _schema_lines(config_class, prefix: str = "model.") -> str:
    lines = []
    for name, field in config_class.model_fields.items():
        kind = _type_name(field.annotation) + _limits(field.metadata)
        lines.append(f"    {prefix}{name}: {kind} = {field.default!r}  {field.description or ''}".rstrip())
    return "\n".join(lines) or "    (no settings)"


@cli.command()
@click.argument("variant", required=False)
@DATA_OPTION
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training images [20].")
@click.option("--batch-size", type=int,
              help="Images per step, 2 or more [64, or the variant's own, shown by `zoo list --schema`].")
@click.option("--lr", type=float,
              help="Peak Adam learning rate [2e-3]; it falls to 0 on a cosine unless --set schedule=constant.")
@click.option("--seed", type=int, help="Seeds the split, the weights and the batch order [0].")
@click.option("--split", type=click.Choice(["writer", "image"]),
              help="writer: 70/15/15 of the writers [default]; image: the study's random 70/30 of the images.")
@click.option("--device", help="auto, cpu or cuda [auto]; with --resume, where to continue [the run's own].")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Run directory [runs/VARIANT-TIMESTAMP].")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="JSON file of settings: training keys and a 'model' object.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set epochs=5 or --set model.loss=mse (repeatable).")
@click.option("--resume", type=click.Path(path_type=Path, file_okay=False), metavar="RUN_DIR",
              help="Continue an interrupted run from its last complete epoch.")
@click.option("--quiet", is_flag=True, help="No progress bars or epoch lines.")
def train(variant, data, epochs, batch_size, lr, seed, split, device, out, config_file, assignments, resume, quiet):
    """Train VARIANT (see `zoo list`) and write a run directory.

    The run directory gets config.json, model.safetensors (best on validation), checkpoint.safetensors (last
    epoch, for --resume), metrics.jsonl, reconstructions.png, loss.png and codes.png, and for models with a prior
    samples.png and interpolation.png. Ctrl-C keeps the last complete epoch.
    """
    from cmnist_zoo import training
    from cmnist_zoo.config import merge_settings, read_json_file

    if resume:
        if variant or config_file or assignments or any(v is not None for v in (batch_size, lr, seed, split, out)):
            raise ZooError("--resume continues a run with its own settings; only --data, --epochs, --device and "
                           "--quiet may be given with it")
        trainer = training.resume(resume, data, epochs, quiet, device)
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
@RUN_DATA_OPTION
@click.option("--quiet", is_flag=True, help="Print nothing but the table.")
@click.option("--no-classifier", is_flag=True,
              help="Skip the reference classifier's figures (it is trained once per data set and split, then cached).")
def evaluate(run_dir, data, quiet, no_classifier):
    """Evaluate RUN_DIR on its test images; print the figures and write RUN_DIR/eval.json.

    Reports MSE, NMSE (MSE over that of an all-black prediction), BCE and SSIM, for the model and for PCA with as
    many components as the model's code, fitted on the same training images. A reference classifier trained on the
    training writers then says how many reconstructions it still recognises and, for models that can sample, how far
    their samples are from the test images (Fréchet distance in its feature space) and, for conditional models, how
    many show the character asked for.
    """
    from cmnist_zoo.evaluation import evaluate_run, format_report

    report = evaluate_run(run_dir, data, quiet, classifier=not no_classifier)
    click.echo(format_report(report))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option("--onnx", "onnx_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Draw from a decoder exported by `zoo export` instead of a run, with onnxruntime (no PyTorch).")
@click.option("--n", "count", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Images to draw; for a conditional model without --label, images of each character.")
@click.option("--label", metavar="CHAR|CODE", help="Draw this character (七, or its code 8); conditional models only.")
@click.option("--seed", type=click.IntRange(0, 2**53 - 1), default=0, show_default=True,
              help="Seeds the codes: the same seed gives the same images (here, with --onnx and in the web page).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.png",
              help="Where to write the grid [RUN_DIR/samples-{all|codeN}-seedS.png; with --onnx, beside FILE].")
@RUN_DATA_OPTION
def sample(run_dir, onnx_file, count, label, seed, out, data):
    """Draw new images from RUN_DIR's model: from its prior (of the chosen character for conditional models; without
    --label, one row per character).

    A model without a prior is sampled from a diagonal Gaussian fitted to the codes of its training images (which
    needs its data, from where it was trained or from --data); a line on stderr says so. With --onnx FILE instead of
    RUN_DIR, an exported decoder draws them (a model without a prior then uses the Gaussian stored in the file).
    """
    if (run_dir is None) == (onnx_file is None):
        raise ZooError("give either RUN_DIR or --onnx FILE (an exported decoder), not both or neither")
    if onnx_file is not None:
        if data:
            raise ZooError("--data is not used with --onnx: an exported decoder carries all it needs")
        from cmnist_zoo.exporters.onnx_sampling import sample_onnx

        path, samples = sample_onnx(onnx_file, count, label, seed, out)
    else:
        from cmnist_zoo.sampling import sample_run

        path, samples = sample_run(run_dir, count, label, seed, out, data)
    if samples.note:
        click.echo(samples.note, err=True)
    click.echo(f"wrote {path}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Folder for the files [RUN_DIR/export].")
@click.option("--parts", default="decoder,encoder", show_default=True, help="Graphs to export, comma-separated.")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="fp32, fp16 or int8, or several comma-separated; fp16 and int8 are judged by the quality they keep.")
@click.option("--opset", type=int, help="ONNX opset version, 13 or more [18].")
@click.option("--batch-sizes", default="1,7,256", show_default=True,
              help="Batch sizes each graph must run at and agree with PyTorch at.")
@RUN_DATA_OPTION
@click.option("--quiet", is_flag=True, help="Print only the files written.")
@click.option("--web", "web_dir", type=click.Path(path_type=Path, file_okay=False), metavar="OUT_DIR",
              help="Write a static web page that draws with the fp32 decoder instead (RUN_DIR may then be an "
                   "exported decoder.onnx).")
def export(run_dir, out, parts, precisions, opset, batch_sizes, data, quiet, web_dir):
    """Export RUN_DIR's decoder and encoder as self-contained ONNX files, each kept only once it matches PyTorch.

    The decoder maps latents (and the class index, for conditional models) to images in [0, 1]; the encoder maps
    images to codes (the mean, for VAEs). Each file passes the ONNX checker and shape inference, then runs at every
    batch size against PyTorch on random inputs and on the run's test images; the figures go beside it, in
    PART[.PRECISION].parity.json. A file that fails is not kept under its name, and the command exits non-zero.

    With --web OUT_DIR: the page, the decoder (the run's passing export reused, else exported) and onnxruntime-web
    (installed by `npm ci --prefix web` in the repository) go to OUT_DIR; any static file server can serve it.
    """
    def comma_list(text: str) -> list[str]:
        return [item.strip() for item in text.split(",") if item.strip()]

    try:
        sizes = [int(size) for size in comma_list(batch_sizes)]
    except ValueError:
        raise ZooError(f"--batch-sizes {batch_sizes!r}: give whole numbers separated by commas, e.g. 1,7,256") \
            from None
    if web_dir is not None:
        from cmnist_zoo.exporters.web import export_web

        source_of = click.get_current_context().get_parameter_source
        given = [flag for flag, name in (("--out", "out"), ("--parts", "parts"), ("--precision", "precisions"),
                                         ("--data", "data"), ("--opset", "opset"), ("--batch-sizes", "batch_sizes"))
                 if source_of(name) is click.core.ParameterSource.COMMANDLINE]
        # an exported file is copied as it is: the options of an export do not apply to it either
        clashing = given if run_dir.is_file() else [flag for flag in given if flag in ("--out", "--parts",
                                                                                       "--precision")]
        if clashing:
            what = f"the page around {run_dir} as it is" if run_dir.is_file() else "the fp32 decoder and its page"
            raise ZooError(f"--web writes {what}; {', '.join(clashing)} cannot go with it")
        bundle = export_web(run_dir, web_dir, opset, data, sizes, quiet)
        click.echo(str(bundle.folder) if quiet else f"wrote the web page to {bundle.folder} (decoder: "
                                                    f"{bundle.origin}); serve it with `python -m http.server -d "
                                                    f"{bundle.folder}` and open http://localhost:8000/")
        return
    from cmnist_zoo.exporters.export import DEFAULT_OPSET, export_run
    from cmnist_zoo.exporters.parity import summarize

    exported = export_run(run_dir, out, comma_list(parts), comma_list(precisions),
                          DEFAULT_OPSET if opset is None else opset, data, sizes, quiet)
    for item in exported:
        click.echo(str(item.path) if quiet else f"wrote {item.path}  ({summarize(item.report)}; figures in "
                                                 f"{item.report_path.name})")


def main():
    cli(prog_name="zoo")


if __name__ == "__main__":
    main()
