"""What a benchmark ran on, recorded beside its figures, and how its results are written.

Speed figures mean nothing without the machine: CPU model, usable cores, threads, GPU, library versions and the load
average at the start (other work on the machine slows every figure down).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("cmnist-zoo", "torch", "numpy", "onnx", "onnxruntime", "pythae")
RESULTS = Path("benchmarks") / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def gpu() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def describe_machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory_gib(),
        "gpu": gpu(),
        "os": platform.platform(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "versions": versions(),
    }


def machine_line(machine: dict[str, Any]) -> str:
    libraries = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    return (f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores of {machine['cores']}, "
            f"{machine['memory_gib']} GiB, GPU: {machine['gpu'] or 'none'}; load average "
            f"{machine['load_average_1min']} at the start; {libraries}")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out: Path | None, name: str, machine: dict[str, Any], payload: dict[str, Any], table: str) -> Path:
    """Write the figures with the machine (described when the benchmark started) beside them as JSON, print the
    table, and say where the JSON went."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine, **payload, "table": table}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table)
    print()
    print(machine_line(record["machine"]))
    print(f"(written to {path})")
    return path
