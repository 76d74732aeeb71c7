"""The leaderboard: every registered variant trained with its defaults on the same data and split, then evaluated.

    python -m benchmarks.quality --data chinese_mnist.zip --epochs 20 --runs-dir benchmarks/runs
    python -m benchmarks.quality --data chinese_mnist.zip --run concrete=runs/concrete --run vae=runs/vae

Runs given with --run VARIANT=DIR are evaluated as they are; with --reuse, a finished run already in --runs-dir is
too. PCA with as many components as a model's code and the all-black prediction close the table, so every figure can
be read against what needs no training at all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe_machine, markdown_table, write_results

NAME = "quality"
NO_PRIOR_MARK = "†"  # cmnist_zoo.classifier.NO_PRIOR_SAMPLER
MIXTURE_MARK = "‡"  # cmnist_zoo.classifier.MIXTURE_SAMPLER


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="the data set (a path, or synthetic[:N]); default: $ZOO_DATA, else synthetic")
    parser.add_argument("--epochs", type=int, default=20, help="epochs for the variants trained here [20]")
    parser.add_argument("--runs-dir", type=Path, default=Path("benchmarks") / "runs",
                        help="where the runs trained here go, one folder per variant [benchmarks/runs]")
    parser.add_argument("--variants", help="comma-separated variant names (default: every registered variant)")
    parser.add_argument("--run", action="append", default=[], metavar="VARIANT=DIR",
                        help="evaluate this trained run instead of training VARIANT (repeatable)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate a finished run already in --runs-dir instead of training it again")
    parser.add_argument("--out", type=Path, help="the JSON file [benchmarks/results/quality.json]")
    return parser.parse_args(argv)


def given_runs(pairs: list[str]) -> dict[str, Path]:
    from cmnist_zoo.errors import ZooError

    runs = {}
    for pair in pairs:
        variant, sep, directory = pair.partition("=")
        if not sep or not variant or not directory:
            raise ZooError(f"--run {pair!r}: expected VARIANT=DIR, e.g. --run vae=runs/vae")
        runs[variant.strip()] = Path(directory)
    return runs


def finished(run_dir: Path) -> bool:
    from cmnist_zoo.runs import MODEL, read_metrics, read_run_config

    if not (run_dir / MODEL).exists():
        return False
    epochs = read_run_config(run_dir)["train"]["epochs"]
    return any(m["epoch"] == epochs for m in read_metrics(run_dir))


def obtain_run(variant: str, args: argparse.Namespace, given: dict[str, Path]) -> tuple[Path, str]:
    """The run directory to evaluate for a variant, training it when needed; and how it was obtained."""
    from cmnist_zoo import training
    from cmnist_zoo.errors import ZooError
    from cmnist_zoo.runs import CONFIG, read_run_config

    if variant in given:
        run_dir = given[variant]
        trained = read_run_config(run_dir)["variant"]
        if trained != variant:
            raise ZooError(f"--run {variant}={run_dir}: that is a {trained!r} run")
        return run_dir, "given"
    run_dir = args.runs_dir / variant
    if (run_dir / CONFIG).exists():
        if args.reuse and finished(run_dir):
            return run_dir, "reused"
        raise ZooError(f"{run_dir} already holds a run; pass --reuse to evaluate it (if finished), or another "
                       "--runs-dir")
    print(f"training {variant} for {args.epochs} epochs into {run_dir}", file=sys.stderr)
    began = time.perf_counter()
    training.start(variant, args.data, {"epochs": args.epochs}, {}, run_dir, quiet=True).fit()
    return run_dir, f"trained here in {time.perf_counter() - began:.0f} s"


def nll_key(model: dict[str, Any]) -> str | None:
    """The variant's likelihood bound in nats per image, when it reports one."""
    keys = [k for k in model if "nll" in k]
    return next((k for k in keys if "nats" in k), keys[0] if keys else None)


def model_row(report: dict[str, Any], epochs: int, obtained: str) -> dict[str, Any]:
    model, judged = report["model"], report.get("classifier", {})
    key = nll_key(model)
    return {
        "name": report["variant"], "run": report["run"], "epochs": epochs, "obtained": obtained,
        "code": len_of_code(report),
        "nmse": model["nmse"], "ssim": model["ssim"],
        "reconstruction_accuracy": judged.get("reconstruction_accuracy"),
        "nll": model.get(key) if key else None, "nll_key": key,
        "sample_accuracy": judged.get("sample_accuracy"),
        "frechet_distance": judged.get("frechet_distance"),
        "sampler": judged.get("sampler"),
        "prior_sample_accuracy": judged.get("prior_sample_accuracy"),
        "prior_frechet_distance": judged.get("prior_frechet_distance"),
    }


def len_of_code(report: dict[str, Any]) -> int:
    return int(next(k for k in report if k.startswith("pca_"))[len("pca_"):])


def baseline_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PCA at each code size in the table, then the all-black prediction."""
    rows = []
    for code in sorted({len_of_code(r) for r in reports}):
        report = next(r for r in reports if len_of_code(r) == code)
        rows.append({"name": f"PCA-{code}", "code": code, "nmse": report[f"pca_{code}"]["nmse"],
                     "ssim": report[f"pca_{code}"]["ssim"],
                     "reconstruction_accuracy": report.get("classifier", {}).get(f"pca_{code}_accuracy")})
    report = reports[0]
    rows.append({"name": "all black", "code": 0, "nmse": report["all_black"]["nmse"],
                 "ssim": report["all_black"]["ssim"],
                 "reconstruction_accuracy": report.get("classifier", {}).get("all_black_accuracy")})
    return rows


def check_comparable(reports: list[dict[str, Any]], seeds: list[int]) -> None:
    from cmnist_zoo.errors import ZooError

    seen = {(r["data"]["hash"], r["split"], seed) for r, seed in zip(reports, seeds)}
    if len(seen) > 1:
        runs = ", ".join(f"{r['variant']}: {r['data']['source']} ({r['split']} split)" for r in reports)
        raise ZooError(f"the runs were not all trained on the same data and split (kind and seed), so their test "
                       f"figures cannot be compared: {runs}")


def fmt(value: Any, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def leaderboard(rows: list[dict[str, Any]]) -> str:
    from cmnist_zoo.classifier import MIXTURE_SAMPLER, NO_PRIOR_SAMPLER

    marks = {NO_PRIOR_SAMPLER: NO_PRIOR_MARK, MIXTURE_SAMPLER: MIXTURE_MARK}
    headers = ["model", "code", "epochs", "NMSE ↓", "SSIM ↑", "recognised recon. ↑", "NLL bound (nats) ↓",
               "samples recognised ↑", "Fréchet distance ↓"]
    table = []
    for row in rows:
        frechet = fmt(row.get("frechet_distance"), ".2f")
        accuracy = fmt(row.get("sample_accuracy"), ".1%")
        mark = marks.get(row.get("sampler"), "")
        if frechet and mark:
            frechet += mark
        if row.get("prior_frechet_distance") is not None:  # a fitted sampler: the prior's own figures beside it
            frechet += f" (prior {row['prior_frechet_distance']:.2f})"
            if accuracy and row.get("prior_sample_accuracy") is not None:
                accuracy += f" (prior {row['prior_sample_accuracy']:.1%})"
        table.append([row["name"], row["code"] or None, row.get("epochs"), fmt(row["nmse"], ".4f"),
                      fmt(row["ssim"], ".4f"), fmt(row.get("reconstruction_accuracy"), ".1%"),
                      fmt(row.get("nll"), ".1f"), accuracy, frechet])
    return markdown_table(headers, table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from cmnist_zoo.classifier import MIXTURE_SAMPLER, NO_PRIOR_SAMPLER
    from cmnist_zoo.errors import ZooError
    from cmnist_zoo.evaluation import evaluate_run
    from cmnist_zoo.registry import list_variants
    from cmnist_zoo.runs import read_run_config

    args = parse_args(argv)
    machine = describe_machine()
    try:
        given = given_runs(args.run)
        registered = [v.name for v in list_variants()]
        wanted = [v.strip() for v in args.variants.split(",")] if args.variants else registered
        unknown = [v for v in [*wanted, *given] if v not in registered]
        if unknown:
            raise ZooError(f"unknown variant {', '.join(unknown)}; registered: {', '.join(registered)}")
        wanted += [v for v in given if v not in wanted]
        reports, rows, seeds = [], [], []
        for variant in wanted:
            run_dir, obtained = obtain_run(variant, args, given)
            print(f"evaluating {variant} ({run_dir})", file=sys.stderr)
            report = evaluate_run(run_dir, args.data, quiet=True)
            reports.append(report)
            train = read_run_config(run_dir)["train"]
            rows.append(model_row(report, train["epochs"], obtained))
            seeds.append(train["seed"])
        check_comparable(reports, seeds)
    except ZooError as exc:
        sys.exit(f"Error: {exc}")
    rows.sort(key=lambda r: r["nmse"])
    rows += baseline_rows(reports)
    judged = reports[0].get("classifier", {})
    first = reports[0]
    notes = [f"Test images: {first['test_images']} ({first['split']} split of {first['data']['source']})."]
    if judged:
        notes.append(f"Reference classifier: {judged['test_accuracy']:.1%} right on the real test images; "
                     f"Fréchet distance of real training images to them: {judged['frechet_train_to_test']:.2f}.")
    if any(r.get("sampler") == NO_PRIOR_SAMPLER for r in rows):
        notes.append(f"{NO_PRIOR_MARK} no prior: sampled from a diagonal Gaussian fitted to the training codes.")
    if any(r.get("sampler") == MIXTURE_SAMPLER for r in rows):
        notes.append(f"{MIXTURE_MARK} sampled from a Gaussian mixture per character fitted to the training codes "
                     "(in brackets: the same model sampled from its N(0, I) prior).")
    nll_keys = sorted({r["nll_key"] for r in rows if r.get("nll_key")})
    if nll_keys:
        notes.append(f"NLL bound: {', '.join(nll_keys)} from each model's own report.")
    table = leaderboard(rows) + "\n\n" + "\n".join(notes)
    payload = {"data": reports[0]["data"], "split": reports[0]["split"], "test_images": reports[0]["test_images"],
               "classifier": {k: judged.get(k) for k in ("test_accuracy", "frechet_train_to_test", "weights")},
               "rows": rows}
    write_results(args.out, NAME, machine, payload, table)
    return payload


if __name__ == "__main__":
    main()
