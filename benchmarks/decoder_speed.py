"""The exported fp32 decoder (onnxruntime, CPU) against the PyTorch eager decoder, side by side in one process.

    cd /work/main && python -m benchmarks.decoder_speed --run RUN_DIR      # or without --run: a fresh `concrete`

Eager is measured as a user would run it: model.eval(), torch.no_grad(), torch's default threads. onnxruntime runs
with the runtime's own session options, once per intra-op thread count in --threads (how the runtime's count was
chosen). The configurations take turns over several rounds, so load from other processes falls on all of them alike;
each figure is the median time per call. Prints a Markdown table and writes the figures as JSON with the machine
beside them (benchmarks/machine.py). The broader comparison (torch.compile, fp16, int8, more batch sizes) is
benchmarks/inference.py.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch

from benchmarks.machine import describe_machine, markdown_table, write_results
from cmnist_zoo.exporters.graphs import output_name, to_onnx
from cmnist_zoo.exporters.runtime import LABEL_INPUT, LATENT_INPUT, cpu_threads, draw_latents, session_options

NAME = "decoder_speed"


def load_model(run_dir: Path | None, variant: str):
    if run_dir is not None:
        from cmnist_zoo.runs import load_run

        run = load_run(run_dir)
        return run.model.eval(), run.variant
    from cmnist_zoo.models import build_model

    torch.manual_seed(0)
    model, _ = build_model(variant, {})
    return model.eval(), variant


def inputs_for(model, batch: int) -> dict[str, np.ndarray]:
    feed = {LATENT_INPUT: draw_latents(batch, model.latent_dim, seed=batch)}
    if model.num_classes > 0:
        feed[LABEL_INPUT] = np.arange(batch, dtype=np.int64) % model.num_classes
    return feed


def eager_call(model, feed: dict[str, np.ndarray]):
    latents = torch.from_numpy(feed[LATENT_INPUT])
    labels = torch.from_numpy(feed[LABEL_INPUT]) if LABEL_INPUT in feed else None

    def call():
        with torch.no_grad():
            return model.generate(latents, labels)
    return call


def onnx_call(path: Path, threads: int, feed: dict[str, np.ndarray]):
    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    output = output_name("decoder")
    return lambda: session.run([output], feed)


def median_ms(calls: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, float]:
    """Median milliseconds per call of each function, the functions taking turns for `rounds` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up: first-call allocations and kernel choices are not what is measured
    for _ in range(rounds):
        for name, call in calls.items():
            began = time.perf_counter()
            while time.perf_counter() - began < seconds / rounds:
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run directory (default: a freshly initialised model)")
    parser.add_argument("--variant", default="concrete", help="variant of the fresh model [concrete]")
    parser.add_argument("--batch-sizes", default="1,256", help="comma-separated [1,256]")
    parser.add_argument("--threads", default="1,2",
                        help=f"onnxruntime intra-op thread counts to compare, comma-separated [1,2; the runtime uses "
                             f"{cpu_threads()}]")
    parser.add_argument("--eager-threads", type=int,
                        help="torch threads for the eager baseline [torch's default]; 1 shows how much of the gap "
                             "on a busy machine is torch's threads waiting for cores")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per configuration and batch size [4]")
    parser.add_argument("--rounds", type=int, default=4, help="turns the configurations take [4]")
    parser.add_argument("--out", type=Path, help=f"JSON file [benchmarks/results/{NAME}.json]")
    args = parser.parse_args(argv)

    if args.eager_threads:
        torch.set_num_threads(args.eager_threads)
    machine = describe_machine()
    model, variant = load_model(args.run, args.variant)
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as work:
        path = Path(work) / "decoder.onnx"
        onnx.save(to_onnx(model, "decoder", 18, variant)[0], str(path))
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            feed = inputs_for(model, batch)
            calls = {"eager": eager_call(model, feed)}
            calls.update({f"onnx_{t}t": onnx_call(path, t, feed) for t in threads})
            times = median_ms(calls, args.rounds, args.seconds)
            rows.append({"batch": batch, **{f"{k}_ms": v for k, v in times.items()},
                         **{f"speedup_{t}t": times["eager"] / times[f"onnx_{t}t"] for t in threads}})
    headers = (["batch", f"eager ms ({torch.get_num_threads()} threads)"] + [f"onnx {t}t ms" for t in threads]
               + [f"eager / onnx {t}t" for t in threads])
    table = markdown_table(headers, [
        [row["batch"], f"{row['eager_ms']:.2f}"] + [f"{row[f'onnx_{t}t_ms']:.2f}" for t in threads]
        + [f"{row[f'speedup_{t}t']:.1f}x" for t in threads] for row in rows])
    payload = {"variant": variant, "run": str(args.run) if args.run else None, "runtime_threads": cpu_threads(),
               "rows": rows}
    write_results(args.out, NAME, machine, payload, table)
    return payload


if __name__ == "__main__":
    main()
