"""Batch planning: expand files, folders and globs into jobs that mirror the input tree."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import images
from ..errors import LiaError

__all__ = ["Job", "UsageError", "is_image", "job_format", "plan_jobs"]

_GLOB_CHARS = set("*?[")


class UsageError(LiaError):
    """The command line names inputs or outputs that cannot work (exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One input file and the output it becomes (a str for a URI such as ``s3://b/k``, see raybatch)."""

    src: Path | str
    dst: Path | str
    fmt: str  # output format name, e.g. "PNG"


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in images.FORMAT_SUFFIXES and not path.name.startswith(".")


def is_image(name: str | Path) -> bool:
    """Whether a file (or an object key) named ``name`` is one the batch upscales."""
    return _is_image(Path(name))


def _walk(root: Path, exclude: Path, recursive: bool) -> Iterator[Path]:
    paths = root.rglob("*") if recursive else root.glob("*")
    for path in sorted(paths):
        if path.is_file() and _is_image(path) and exclude not in path.resolve().parents:
            yield path


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base = [p for p in _takewhile_literal(parts)]
    return Path(*base) if base else Path(".")


def _takewhile_literal(parts: Sequence[str]) -> Iterator[str]:
    for part in parts:
        if _GLOB_CHARS & set(part):
            return
        yield part


def _out_format(src: Path, fmt: str) -> tuple[str, str]:
    """(format name, suffix) for ``src`` under ``--format fmt`` (same|png|jpg|webp|tiff)."""
    if fmt == "same":
        name = images.format_for_suffix(src)
        return name, src.suffix
    name = images.format_for_suffix(Path(f"x.{fmt}"))
    return name, "." + fmt


def job_format(src: str | Path, fmt: str) -> tuple[str, str]:
    """(format name, output suffix) of the job for ``src`` under ``--format fmt``."""
    return _out_format(Path(src), fmt)


def plan_jobs(inputs: Sequence[str], output: str, *, fmt: str = "same", recursive: bool = True) -> list[Job]:
    """Expand files, folders and glob patterns into jobs mirroring the tree under ``output``.

    ``output`` is a file path when there is exactly one input file and it has an image
    suffix; otherwise a folder. Outputs inside an input folder are never read back.
    Raises UsageError for an input that does not exist or a pattern that matches nothing.
    """
    out = Path(output)
    out_resolved = out.resolve()
    pairs: list[tuple[Path, Path]] = []  # (src, path relative to the output folder)
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pairs += [(p, p.relative_to(path)) for p in _walk(path, out_resolved, recursive)]
        elif path.is_file():
            pairs.append((path, Path(path.name)))
        elif _GLOB_CHARS & set(item):
            base = _glob_base(item)
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            files = [m for m in matches if m.is_file() and _is_image(m) and out_resolved not in m.resolve().parents]
            if not files:
                raise UsageError(f"no image matches {item!r}")
            pairs += [(m, m.relative_to(base)) for m in files]
        else:
            raise UsageError(f"input not found: {item}")
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src, rel in pairs:
        name, suffix = _out_format(src, fmt)
        if single_file and out.suffix.lower() in images.FORMAT_SUFFIXES:
            dst = out
            name = images.format_for_suffix(out) if fmt == "same" else name
        else:
            dst = out / rel.with_suffix(suffix)
        key = dst.resolve()
        if key == src.resolve():
            raise UsageError(f"output would overwrite its input: {src}")
        if key in seen:
            raise UsageError(f"{src} and {seen[key]} would both be written to {dst}")
        seen[key] = src
        jobs.append(Job(src, dst, name))
    return jobs
