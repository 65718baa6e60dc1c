"""The CPU the benchmark runs on: its cores, its vector features and its float32 matmul peak."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["all_cores", "cpu_features", "matmul_peak", "matmul_timer", "torch_threads"]

#: /proc/cpuinfo flags worth naming for float32 convolutions (x86; other CPUs report none).
VECTOR_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    blocks = []
    for chunk in text.strip().split("\n\n"):
        fields = {}
        for line in chunk.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        blocks.append(fields)
    return blocks


def all_cores() -> int:
    """Physical cores this process may run on: torch's own default thread count.

    Counted as distinct (physical id, core id) pairs among the allowed CPUs in
    /proc/cpuinfo, so SMT siblings count once; without that information, the CPUs
    allowed to the process.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = {(b.get("physical id"), b.get("core id")) for b in _cpuinfo()
             if b.get("processor", "").isdigit() and int(b["processor"]) in allowed and "core id" in b}
    return max(1, len(cores) or len(allowed))


def cpu_features() -> dict:
    """What the benchmark detects about the CPU, JSON-ready.

    ``model``: the model name from /proc/cpuinfo; ``capability``: the vector code path
    torch dispatches to (``torch.backends.cpu.get_cpu_capability()``, e.g. ``"AVX2"``,
    ``"AVX512"``); ``flags``: the :data:`VECTOR_FLAGS` the kernel reports; ``avx512``:
    whether ``avx512f`` is among them; ``logical_cpus`` / ``cores``: allowed CPUs and
    :func:`all_cores`.
    """
    info = _cpuinfo()
    flags = set(info[0].get("flags", "").split()) if info else set()
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return {
        "model": info[0].get("model name") if info else None,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": [f for f in VECTOR_FLAGS if f in flags],
        "avx512": "avx512f" in flags,
        "logical_cpus": len(allowed),
        "cores": all_cores(),
    }


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with torch on ``threads`` CPU threads (None: as it is); restored after,
    also when the block raises. Yields the count in effect."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def matmul_timer(size: int = 2048) -> Callable[[], float]:
    """``time_one()``: the GFLOP/s (2 * size**3 per product) of one float32 ``torch.mm`` of two
    ``size``-square matrices on the current CPU threads. The matrices are made (and the
    product warmed up) once, here."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=g)
    b = torch.rand(size, size, generator=g)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)

    def time_one() -> float:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        return 2 * size**3 / (time.perf_counter() - t0) / 1e9

    return time_one


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of ``repeats`` float32 ``size``-square ``torch.mm`` runs (after one
    warm-up) on the current CPU threads: :func:`matmul_timer`, best of ``repeats``.

    The practical peak that the network's achieved GFLOP/s is compared with: the same
    library and threads, the most regular work a CPU gets.
    """
    time_one = matmul_timer(size)
    return max(time_one() for _ in range(repeats))
