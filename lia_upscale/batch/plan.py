"""Batch planning: expand files, folders and globs into jobs that mirror the input tree."""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from .. import images
from ..errors import LiaError, OutputError
from ..pipeline import OutputSpec

__all__ = ["Job", "UsageError", "expand_inputs", "is_image", "job_format", "make_jobs", "plan_jobs"]

_GLOB_CHARS = set("*?[")


class UsageError(LiaError):
    """The command line names inputs or outputs that cannot work (exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One input file and the output it becomes (a str for a URI such as ``s3://b/k``, see
    raybatch); ``error``: why it fails before it starts (an unreadable folder, an unsupported
    explicit input), reported as its outcome."""

    src: Path | str
    dst: Path | str
    fmt: str  # output format name, e.g. "PNG"
    error: str | None = None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in images.FORMAT_SUFFIXES and not path.name.startswith(".")


def is_image(name: str | Path) -> bool:
    """Whether a file (or an object key) named ``name`` is one the batch upscales."""
    return _is_image(Path(name))


def _walk(root: Path, exclude: Path, recursive: bool) -> Iterator[Path | OSError]:
    """Image files under ``root`` in sorted order, and an OSError for each folder that cannot be read."""
    errors: list[OSError] = []
    found: list[Path] = []
    for folder, subdirs, files in os.walk(root, onerror=errors.append):
        base = Path(folder)
        if not recursive:
            subdirs.clear()
        subdirs[:] = [d for d in subdirs if exclude != (base / d).resolve()]
        for name in files:
            path = base / name
            if path.is_file() and _is_image(path) and exclude not in path.resolve().parents:
                found.append(path)
    yield from errors
    yield from sorted(found)


def _unreadable(error: OSError) -> str:
    why = "permission denied" if isinstance(error, PermissionError) else (error.strerror or str(error))
    return f"{error.filename}: {why}"


def _not_regular(path: Path) -> str | None:
    """Why an existing ``path`` that is neither a folder nor a regular file cannot be an input."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = {stat.S_ISFIFO: "named pipe", stat.S_ISSOCK: "socket", stat.S_ISCHR: "character device",
             stat.S_ISBLK: "block device"}
    kind = next((k for test, k in kinds.items() if test(mode)), None)
    return f"{path}: not a regular file ({kind})" if kind else None


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
    """(format name, suffix) for ``src`` under ``--format fmt`` (same|png|jpg|webp|tiff|heic|avif)."""
    if fmt == "same":
        name = images.format_for_suffix(src)
        return name, src.suffix
    name = images.format_for_suffix(Path(f"x.{fmt}"))
    return name, "." + fmt


def job_format(src: str | Path, fmt: str) -> tuple[str, str]:
    """(format name, output suffix) of the job for ``src`` under ``--format fmt``."""
    return _out_format(Path(src), fmt)


def make_jobs(
    pairs: Sequence[tuple[Path | str, PurePath, str | None]],
    output: Path | str,
    spec: OutputSpec,
    *,
    to_file: bool,
    key: Callable[[Path | str], object],
    join: Callable[[Path | str, PurePath], Path | str],
) -> list[Job]:
    """Jobs for (source, path relative to the output, error) ``pairs``: the output names and
    formats under ``spec``, and the collision checks, for any kind of location.

    ``to_file``: ``output`` is the one output file; ``key(location)`` compares two locations
    (a resolved path, a URI string); ``join(output, rel)`` names a location under the
    output. Raises UsageError for an output that would replace its input or another input,
    or two inputs written to one output.
    """
    sources = {key(src) for src, _, error in pairs if error is None}
    jobs: list[Job] = []
    seen: dict[object, Path | str] = {}
    for src, rel, error in pairs:
        if error is not None:
            jobs.append(Job(src, join(output, rel), "", error))
            continue
        try:
            name, suffix = job_format(src, spec.fmt)
        except OutputError as exc:  # an explicit input of a type we do not read
            jobs.append(Job(src, join(output, rel), "", str(exc)))
            continue
        if to_file:
            dst = output
            name = images.format_for_suffix(PurePath(str(output)).name) if spec.fmt == "same" else name
        else:
            dst = join(output, rel.with_suffix(suffix))
        k = key(dst)
        if k == key(src):
            raise UsageError(f"output would overwrite its input: {src}")
        if k in sources:
            raise UsageError(f"{src} would be written to {dst}, which is another input")
        if k in seen:
            raise UsageError(f"{src} and {seen[k]} would both be written to {dst}")
        seen[k] = src
        jobs.append(Job(src, dst, name))
    return jobs


def expand_inputs(inputs: Sequence[str], out_resolved: Path, recursive: bool) -> list[tuple[Path, PurePath, str | None]]:
    """(source, path relative to the output folder, error) for files, folders and glob patterns."""
    pairs: list[tuple[Path, PurePath, str | None]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            if path.resolve() == out_resolved:
                raise UsageError(f"the output folder {item} is also an input folder")
            for p in _walk(path, out_resolved, recursive):
                if isinstance(p, OSError):
                    folder = Path(p.filename)
                    pairs.append((folder, folder.relative_to(path) if folder != path else Path(), _unreadable(p)))
                else:
                    pairs.append((p, p.relative_to(path), None))
        elif path.is_file():
            pairs.append((path, Path(path.name), None))
        elif (why := _not_regular(path)) is not None:
            raise UsageError(why)
        elif _GLOB_CHARS & set(item):
            base = _glob_base(item)
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            files = [m for m in matches if m.is_file() and _is_image(m) and out_resolved not in m.resolve().parents]
            if not files:
                raise UsageError(f"no image matches {item!r}")
            pairs += [(m, m.relative_to(base), None) for m in files]
        else:
            raise UsageError(f"input not found: {item}")
    return pairs


def plan_jobs(inputs: Sequence[str], output: str, spec: OutputSpec | None = None, *,
              recursive: bool = True) -> list[Job]:
    """Expand files, folders and glob patterns into jobs mirroring the tree under ``output``.

    ``output`` is a file path when there is exactly one input file and it has an image
    suffix; otherwise a folder. Outputs inside an input folder are never read back. Output
    names and formats follow ``spec`` (default :class:`~lia_upscale.pipeline.OutputSpec`).
    Raises UsageError for an input that does not exist or is not a regular file, a pattern
    that matches nothing, an output that is an input folder or (for several inputs) not a
    folder, and any output that would replace an input. A folder that cannot be read, or an
    explicit input of an unsupported type, becomes a job with an ``error`` (it fails alone).
    """
    out = Path(output)
    pairs = expand_inputs(inputs, out.resolve(), recursive)
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    to_file = single_file and out.suffix.lower() in images.FORMAT_SUFFIXES
    if not to_file and (out.exists() and not out.is_dir()
                        or not out.exists() and out.suffix.lower() in images.FORMAT_SUFFIXES):
        raise UsageError(f"{output} must be a folder for this many inputs (it is "
                         f"{'a file' if out.exists() else 'named like an image'})")
    return make_jobs(pairs, out, spec or OutputSpec(), to_file=to_file,
                     key=lambda p: Path(p).resolve(), join=lambda base, rel: Path(base) / rel)
