"""Planning on the driver: the actor pool for a cluster, jobs with URIs, outputs that exist."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..batch import Job, UsageError, expand_inputs, is_image, make_jobs, plan_jobs
from ..pipeline import OutputSpec

__all__ = ["RayOptions", "Workers", "existing_outputs", "filesystem", "is_uri", "plan", "plan_workers"]


def is_uri(name: str | Path) -> bool:
    """Whether ``name`` is a URI for ``pyarrow.fs`` (``s3://b/k``, ``gs://...``), not a plain path."""
    return isinstance(name, str) and "://" in name and not name.startswith("file://")


def filesystem(uri: str):
    """(``pyarrow.fs`` file system, path inside it) for ``uri``."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


@dataclass(frozen=True)
class RayOptions:
    """How the batch uses the cluster.

    ``address``: a Ray address (None: ``RAY_ADDRESS``, else a new local instance).
    ``workers``: actors (None: one per GPU, or the cluster's CPUs less one over
    ``threads``). ``threads``: CPUs (and torch threads) per CPU actor. ``retries``: runs
    of a block after its worker died (bounded: a file that kills its worker is not
    retried forever). ``stall_s``: the batch stops when no file finishes for this long.
    """

    address: str | None = None
    workers: int | None = None
    threads: int = 1
    retries: int = 1
    stall_s: float = 1800.0


@dataclass(frozen=True)
class Workers:
    """The actor pool: ``count`` actors, each on one GPU (``gpu``) or on ``cpus`` CPUs."""

    count: int
    gpu: bool
    cpus: int


def plan_workers(resources: dict[str, float], device: str, workers: int | None, threads: int) -> tuple[Workers, str | None]:
    """The actor pool for a cluster with ``resources`` (``ray.cluster_resources()``) and a note, if any.

    ``device`` auto: one float16 actor per GPU, or CPU actors when the cluster has no GPU
    (asking for a GPU there would wait forever). cuda: GPU actors; without a GPU in the
    cluster only when ``workers`` says how many (an autoscaler may add them), else
    UsageError. cpu: CPU actors, by default as many as fit in the cluster's CPUs less one,
    which Ray Data keeps for its own tasks (actors holding every CPU starve them).
    """
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 0))
    kind = device.strip().lower()
    if kind != "cpu" and (gpus or kind != "auto"):
        if kind.startswith("cuda:"):
            raise UsageError(f"--device {device} names one GPU; on a Ray cluster use --device cuda or auto")
        if not gpus and workers is None:
            raise UsageError("--device cuda: the Ray cluster has no GPU; use --device auto or cpu, "
                             "or --ray-workers N to wait for N GPU actors (an autoscaling cluster)")
        note = None if gpus else f"the cluster has no GPU now: waiting for {workers} GPU actor(s)"
        return Workers(workers or gpus, True, 1), note
    if cpus < 1:
        raise UsageError("the Ray cluster reports no CPU")
    room = max(1, cpus - 1)
    fit = max(1, room // threads)
    note = "the Ray cluster has no GPU: CPU actors" if kind == "auto" else None
    if workers is not None and workers > fit:
        note = (f"--ray-workers {workers} x {threads} CPU(s) exceeds the {room} CPU(s) the cluster can give "
                f"actors; running {fit}")
    return Workers(min(workers or fit, fit), False, threads), note


def _join(base: str, rel: PurePosixPath) -> str:
    return base.rstrip("/") + "/" + rel.as_posix()


def _uri_pairs(item: str, recursive: bool) -> list[tuple[str, PurePosixPath]]:
    """(source URI, path relative to the output) for one input URI: an object or a prefix."""
    from pyarrow import fs as pafs

    fsys, path = filesystem(item)
    info = fsys.get_file_info(path)
    scheme = item.split("://", 1)[0]
    if info.type == pafs.FileType.File:
        return [(item, PurePosixPath(PurePosixPath(path).name))]
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"input not found: {item}" + (" (globs in URIs are not supported)"
                                                        if set("*?[") & set(item) else ""))
    found = fsys.get_file_info(pafs.FileSelector(path, recursive=recursive))
    root = PurePosixPath(path)
    return [(f"{scheme}://{f.path}", PurePosixPath(f.path).relative_to(root))
            for f in sorted(found, key=lambda f: f.path)
            if f.type == pafs.FileType.File and is_image(f.base_name)]


def plan(inputs: Sequence[str], output: str, spec: OutputSpec | None = None, *, recursive: bool = True) -> list[Job]:
    """:func:`~lia_upscale.batch.plan_jobs`, with URIs allowed for inputs and the output.

    Without a URI this is ``plan_jobs`` itself. With one, a Job's URI side is a str; plain
    inputs are expanded as ``plan_jobs`` does (globs, tree walk) and mirrored under the
    output URI; URI inputs are an object or a prefix (no globs). Names, formats and the
    collision checks are the local planner's (:func:`~lia_upscale.batch.make_jobs`).
    """
    spec = spec or OutputSpec()
    if not any(is_uri(name) for name in (*inputs, output)):
        return plan_jobs(inputs, output, spec, recursive=recursive)
    plain = [item for item in inputs if not is_uri(item)]
    # any folder outside the inputs will do as the walk's excluded output
    pairs: list = expand_inputs(plain, Path("/nonexistent-lia-upscale-plan"), recursive) if plain else []
    for item in inputs:
        if is_uri(item):
            pairs += [(src, rel, None) for src, rel in _uri_pairs(item, recursive)]
    single = len(inputs) == 1 and len(pairs) == 1 and str(pairs[0][0]) == str(inputs[0])  # one file, not a folder
    return make_jobs(pairs, output if is_uri(output) else Path(output), spec, to_file=single and is_image(output),
                     key=lambda loc: str(loc) if is_uri(loc) else str(Path(loc).resolve()),
                     join=lambda base, rel: _join(str(base), rel) if is_uri(base) else Path(base) / rel)


def existing_outputs(jobs: Sequence[Job]) -> set[str]:
    """The outputs among ``jobs`` that exist: plain paths one by one, URIs by listing each prefix once."""
    from pyarrow import fs as pafs

    found: set[str] = set()
    prefixes: dict[str, list[Job]] = {}
    for job in jobs:
        if is_uri(job.dst):
            prefixes.setdefault(str(job.dst).rsplit("/", 1)[0], []).append(job)
        elif Path(job.dst).exists():
            found.add(str(job.dst))
    for prefix, group in prefixes.items():
        fsys, path = filesystem(prefix)
        listed = fsys.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = {f.path for f in listed if f.type == pafs.FileType.File}
        scheme = prefix.split("://", 1)[0]
        found |= {str(job.dst) for job in group if str(job.dst)[len(scheme) + 3:] in names}
    return found
