"""Validated click parameter types: every numeric option is checked when it is parsed
(finite, in range, within sensible maxima), so a bad value is a usage error (exit 2)
before any model loads or file is touched."""

from __future__ import annotations

import math
import os

import click

__all__ = ["Threads", "NonEmptyPath", "FiniteFloat", "ByteSize", "ImageEdges", "Count", "machine_threads",
           "MAX_OUTSCALE", "MAX_TILE", "MAX_BATCH", "MAX_PATCH", "MAX_BENCH_EDGE", "MAX_BENCH_PIXELS", "MAX_SEED"]

#: Largest --outscale factor (an output's own size is checked against its format and the
#: memory budget before the network runs; this only keeps the number itself sane).
MAX_OUTSCALE = 64.0
#: Largest tile edge, in input pixels (a whole 89-MP image is 9460 px a side).
MAX_TILE = 16384
#: Largest training batch and LR patch edge: 1024 patches of 48 px at x2 already take gigabytes.
MAX_BATCH = 1024
MAX_PATCH = 512
#: Largest benchmark input: an edge, and its pixels (the 12-MP photo case fits).
MAX_BENCH_EDGE = 16384
MAX_BENCH_PIXELS = 50_000_000
#: Largest random seed (torch takes 64-bit seeds).
MAX_SEED = 2**63 - 1


def machine_threads() -> int:
    """The most CPU threads an option may ask for: this machine's logical CPUs."""
    return os.cpu_count() or 1


def Count(low: int = 1, high: int | None = None) -> click.IntRange:  # noqa: N802 - a type, as click's
    """A whole number in [low, high] (click's IntRange: '1e20' or '2.5' is a usage error)."""
    return click.IntRange(min=low, max=high)


class Threads(click.ParamType):
    """CPU threads: a whole number from 1 to this machine's CPU count (more would only
    oversubscribe, and a huge count aborts inside OpenMP)."""

    name = "threads"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            text = str(value).strip()
        most = machine_threads()
        if not (text.isascii() and text.isdecimal() and len(text) <= 6 and 1 <= int(text) <= most):
            self.fail(f"{value!r} is not a whole number from 1 to {most} (this machine's CPUs)", param, ctx)
        return int(text)


class FiniteFloat(click.FloatRange):
    """A finite number in a range (click's FloatRange lets NaN through every bound)."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(value, param, ctx)


class ByteSize(click.ParamType):
    """A size in bytes: a number with an optional K, M, G or T suffix (powers of 1024)."""

    name = "size"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                self.fail(f"{value!r} is not a positive size", param, ctx)
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in self._UNITS else ""
        try:
            number = float(text[: len(text) - len(unit)])
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 4G, 512M)", param, ctx)
        if not (math.isfinite(number) and number > 0 and number * self._UNITS[unit] < 2**62):
            self.fail(f"{value!r} is not a positive size", param, ctx)
        if number * self._UNITS[unit] < 1:
            self.fail(f"{value!r} is less than a byte", param, ctx)
        return int(number * self._UNITS[unit])


class ImageEdges(click.ParamType):
    """An input size: ``"512"`` -> 512, ``"1152x864"`` (width x height) -> (864, 1152);
    each edge at least 7 pixels and at most :data:`MAX_BENCH_EDGE`, at most
    :data:`MAX_BENCH_PIXELS` pixels in all."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        text = str(value).strip().lower()
        parts = text.split("x")
        if not (1 <= len(parts) <= 2 and all(p.isascii() and p.isdecimal() and len(p) <= 6 for p in parts)):
            self.fail(f"{value!r} is not an edge or WIDTHxHEIGHT (e.g. 512 or 1152x864)", param, ctx)
        edges = [int(p) for p in parts]
        w, h = edges[0], edges[-1]
        if min(edges) < 7 or max(edges) > MAX_BENCH_EDGE or w * h > MAX_BENCH_PIXELS:
            self.fail(f"{value!r} is not an edge or WIDTHxHEIGHT from 7 to {MAX_BENCH_EDGE} pixels a side "
                      f"({MAX_BENCH_PIXELS:,} pixels at most)", param, ctx)
        return edges[0] if len(edges) == 1 else (edges[1], edges[0])


class NonEmptyPath(click.Path):
    """A path that is not empty: ``--weights ''`` would otherwise name the current folder."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path names no file", param, ctx)
        return super().convert(value, param, ctx)
