"""Decoder speed: PyTorch eager, torch.compile and ONNX Runtime at fp32, fp16 and int8, side by side in one run.

    python -m benchmarks.inference --run runs/concrete --data chinese_mnist.zip

For each thread count (1 and all usable cores) and batch size (1, 64, 1024) it measures the latency of one decoder
call and the images per second, as ratios to PyTorch eager. The decoder's FLOPs per image (counted by PyTorch's
FlopCounterMode: its convolutions, transposed convolutions and matrix products) turn images per second into GFLOP/s,
shown beside the machine's peak: a large fp32 matrix product on the same threads. The ONNX files come from the
zoo's own exporter (cmnist_zoo.exporters.export.export_run, parity-checked as `zoo export` does). A runtime that
cannot run here (torch.compile without a working compiler, say) is listed as unavailable with the reason.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmarks.machine import describe_machine, markdown_table, usable_cores, write_results

NAME = "inference"
RUNTIMES = ("eager", "compile", "onnx-fp32", "onnx-fp16", "onnx-int8")
BATCH_SIZES = (1, 64, 1024)
QUICK_BATCH_SIZES = (1, 8)
MIN_SECONDS = 1.0  # measuring time per runtime and batch size, after warm-up
QUICK_SECONDS = 0.05
MIN_CALLS = 3
PEAK_SIZE = 2048  # the matrix product that stands for the machine's peak
QUICK_PEAK_SIZE = 256


@dataclass
class Runtime:
    """A way to run the decoder: `prepare(threads)` returns a callable taking (latent, label) numpy arrays, or
    raises when the runtime cannot run here."""

    name: str
    prepare: Callable[[int], Callable[[Any, Any], Any]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory whose decoder is measured")
    parser.add_argument("--data", help="the run's data, if it moved (for the exporter's parity and int8 calibration)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated, of {', '.join(RUNTIMES)}")
    parser.add_argument("--batch-sizes", help="comma-separated [1,64,1024; --quick: 1,8]")
    parser.add_argument("--threads", help="comma-separated thread counts [1 and all usable cores; --quick: 1]")
    parser.add_argument("--seconds", type=float, help=f"measuring time per cell [{MIN_SECONDS}; --quick: "
                                                      f"{QUICK_SECONDS}]")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--out", type=Path, help="the JSON file [benchmarks/results/inference.json]")
    return parser.parse_args(argv)


def numbers(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",")) if text else default


def flops_per_image(graph, inputs) -> int:
    """FLOPs of one decoder call at batch 1, as PyTorch's FlopCounterMode counts them (2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        graph(*[torch.from_numpy(x[:1]) for x in inputs])
    return int(counter.get_total_flops())


def peak_gflops(threads: int, size: int) -> float:
    """The machine's fp32 matrix-product rate on `threads` threads: best of a few products of size x size."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * size ** 3 / best / 1e9


def _timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def measure(call: Callable[[], Any], seconds: float) -> list[float]:
    """Seconds per call: two warm-up calls, then calls until `seconds` have passed (at least MIN_CALLS)."""
    call()
    call()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < MIN_CALLS or time.perf_counter() - began < seconds:
        times.append(_timed(call))
    return times


def torch_runtime(graph, compiled: bool) -> Runtime:
    import torch

    def prepare(threads: int):
        torch.set_num_threads(threads)
        if compiled:
            torch._dynamo.reset()  # compiled kernels may keep the thread count they were built for
        module = torch.compile(graph) if compiled else graph

        def run(latent, label):
            with torch.inference_mode():
                return module(*[torch.from_numpy(x) for x in (latent, label) if x is not None])
        return run
    return Runtime("compile" if compiled else "eager", prepare)


def onnx_runtime(path: Path, precision: str) -> Runtime:
    import onnxruntime as ort

    from cmnist_zoo.exporters.runtime import IMAGE_OUTPUT, LABEL_INPUT, LATENT_INPUT, session_options

    def prepare(threads: int):
        options = session_options()  # the zoo runtime's own settings, with the thread count under test
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        takes_label = any(i.name == LABEL_INPUT for i in session.get_inputs())

        def run(latent, label):
            feed = {LATENT_INPUT: latent, **({LABEL_INPUT: label} if takes_label else {})}
            return session.run([IMAGE_OUTPUT], feed)
        return run
    return Runtime(f"onnx-{precision}", prepare)


def export_decoders(run_dir: Path, data: str | None, precisions: list[str], out: Path, quick: bool
                    ) -> tuple[dict[str, Path], dict[str, str]]:
    """Each precision exported on its own, so one that fails its parity check leaves the others measurable."""
    from cmnist_zoo.errors import ZooError
    from cmnist_zoo.exporters.export import export_run

    paths, failures = {}, {}
    for precision in precisions:
        try:
            (exported,) = export_run(run_dir, out, parts=("decoder",), precisions=(precision,), data=data,
                                     quiet=True, **({"batch_sizes": (1, 7)} if quick else {}))
            paths[precision] = exported.path
        except ZooError as exc:
            failures[precision] = f"export failed: {exc}"
    return paths, failures


def inputs_for(model, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    latent = rng.standard_normal((batch, model.latent_dim), dtype=np.float32)
    label = rng.integers(0, model.num_classes, batch).astype(np.int64) if model.num_classes else None
    return latent, label


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from cmnist_zoo.errors import ZooError
    from cmnist_zoo.exporters.graphs import graph_for
    from cmnist_zoo.runs import load_run

    args = parse_args(argv)
    machine = describe_machine()
    wanted = [r.strip() for r in args.runtimes.split(",")]
    unknown = [r for r in wanted if r not in RUNTIMES]
    if unknown:
        sys.exit(f"Error: unknown runtime {', '.join(unknown)}; use {', '.join(RUNTIMES)}")
    batch_sizes = numbers(args.batch_sizes, QUICK_BATCH_SIZES if args.quick else BATCH_SIZES)
    thread_counts = numbers(args.threads, (1,) if args.quick else tuple(dict.fromkeys((1, usable_cores()))))
    seconds = args.seconds if args.seconds is not None else (QUICK_SECONDS if args.quick else MIN_SECONDS)
    try:
        run = load_run(args.run)
    except ZooError as exc:
        sys.exit(f"Error: {exc}")
    model = run.model.eval()
    graph = graph_for(model, "decoder")
    flops = flops_per_image(graph, [x for x in inputs_for(model, 1) if x is not None])

    runtimes: list[Runtime] = [torch_runtime(graph, compiled=name == "compile") for name in wanted
                               if name in ("eager", "compile")]
    unavailable: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-onnx-") as folder:
        precisions = [name.removeprefix("onnx-") for name in wanted if name.startswith("onnx-")]
        if precisions:
            print(f"exporting the {run.variant} decoder at {', '.join(precisions)}", file=sys.stderr)
            paths, failures = export_decoders(args.run, args.data, precisions, Path(folder), args.quick)
            runtimes += [onnx_runtime(path, precision) for precision, path in paths.items()]
            unavailable.update({f"onnx-{p}": reason for p, reason in failures.items()})
        results = []
        peaks = {}
        for threads in thread_counts:
            peaks[threads] = peak_gflops(threads, QUICK_PEAK_SIZE if args.quick else PEAK_SIZE)
            for runtime in runtimes:
                if runtime.name in unavailable:
                    continue
                print(f"measuring {runtime.name} on {threads} thread(s)", file=sys.stderr)
                try:
                    call = runtime.prepare(threads)
                    for batch in batch_sizes:
                        latent, label = inputs_for(model, batch)
                        first = _timed(lambda: call(latent, label))  # includes compiling, for torch.compile
                        times = measure(lambda: call(latent, label), seconds)
                        results.append(cell(runtime.name, threads, batch, times, first, flops, peaks[threads]))
                except Exception as exc:  # noqa: BLE001 - any failure means "this runtime cannot run here"
                    detail = (str(exc).strip().splitlines() or [""])[0][:200]
                    unavailable[runtime.name] = f"{type(exc).__name__}: {detail}"
                    results = [r for r in results if r["runtime"] != runtime.name]
    torch.set_num_threads(usable_cores())
    add_ratios(results)
    table = results_table(results, wanted, thread_counts, batch_sizes)
    notes = [f"Decoder of {run.variant} ({args.run}): {flops / 1e6:.1f} MFLOP per image (FlopCounterMode); "
             f"peak = a {QUICK_PEAK_SIZE if args.quick else PEAK_SIZE}² fp32 matrix product on the same threads: "
             + ", ".join(f"{peaks[t]:.1f} GFLOP/s on {t} thread(s)" for t in thread_counts) + ".",
             "Latency: median of one call; images/s = batch / median; × eager: images/s over PyTorch eager's at the "
             "same threads and batch."]
    compiling = [r["first_call_s"] for r in results if r["runtime"] == "compile"]
    if compiling:
        notes.append(f"torch.compile: first calls (compiling) took up to {max(compiling):.1f} s.")
    notes += [f"{name}: unavailable ({reason})" for name, reason in unavailable.items()]
    table += "\n\n" + "\n".join(notes)
    payload = {"run": str(args.run), "variant": run.variant, "flops_per_image": flops,
               "peak_gflops": {str(t): peaks[t] for t in thread_counts}, "results": results,
               "unavailable": unavailable}
    write_results(args.out, NAME, machine, payload, table)
    return payload


def cell(runtime: str, threads: int, batch: int, times: list[float], first: float, flops: int,
         peak: float) -> dict[str, Any]:
    median = statistics.median(times)
    images_per_second = batch / median
    gflops = flops * images_per_second / 1e9
    return {"runtime": runtime, "threads": threads, "batch": batch, "calls": len(times),
            "latency_ms": median * 1e3, "latency_ms_p90": sorted(times)[int(0.9 * (len(times) - 1))] * 1e3,
            "first_call_s": first, "images_per_s": images_per_second, "gflops": gflops,
            "share_of_peak": gflops / peak}


def add_ratios(results: list[dict[str, Any]]) -> None:
    eager = {(r["threads"], r["batch"]): r["images_per_s"] for r in results if r["runtime"] == "eager"}
    for r in results:
        base = eager.get((r["threads"], r["batch"]))
        r["ratio_to_eager"] = r["images_per_s"] / base if base else None


def results_table(results: list[dict[str, Any]], wanted: list[str], thread_counts: tuple[int, ...],
                  batch_sizes: tuple[int, ...]) -> str:
    rows = []
    for threads in thread_counts:
        for batch in batch_sizes:
            for name in wanted:
                found = next((r for r in results
                              if (r["runtime"], r["threads"], r["batch"]) == (name, threads, batch)), None)
                if found is None:
                    rows.append([threads, batch, name, "unavailable", None, None, None, None])
                    continue
                ratio = found["ratio_to_eager"]
                rows.append([threads, batch, name, f"{found['latency_ms']:.3f}", f"{found['images_per_s']:.0f}",
                             None if ratio is None else f"{ratio:.2f}×", f"{found['gflops']:.1f}",
                             f"{found['share_of_peak']:.0%}"])
    return markdown_table(["threads", "batch", "runtime", "latency ms", "images/s", "× eager", "GFLOP/s",
                           "of peak"], rows)


if __name__ == "__main__":
    main()
