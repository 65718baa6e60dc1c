"""The driver: feed Ray Data, read the actors' status rows, reconcile, report as the local batch does."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..batch import BatchEvents, Job, Outcome, UsageError, failure_reason, local_output, prescreen
from ..files import remove_stale_temporaries
from ..pipeline import OutputSpec
from .connect import connect
from .plan import RayOptions, Workers, existing_outputs, is_uri, plan_workers
from .worker import CRASHED, FileUpscaler, on_worker

__all__ = ["BLOCKS_PER_WORKER", "run_jobs"]

#: Blocks per actor in the first pass: enough to balance the load and to show progress,
#: few enough that a block's overhead (a task, a scheduling round) stays small.
BLOCKS_PER_WORKER = 8


class _Stalled(Exception):
    pass


class _MainThreadStdout:
    """``sys.stdout`` while Ray runs: Ray's threads print worker deaths to ``sys.stdout``, which
    is the ``--json`` stream; what other threads write goes to ``sys.stderr`` instead."""

    def __init__(self, out) -> None:
        self._out = out

    def write(self, text: str) -> int:
        if threading.current_thread() is threading.main_thread():
            return self._out.write(text)
        return sys.stderr.write(text)

    def flush(self) -> None:
        self._out.flush()

    def __getattr__(self, name: str):
        return getattr(self._out, name)


def _quiet_ray() -> None:
    """Ray Data's own progress bars and log lines would flood the CLI's display.

    Its console handlers are raised to CRITICAL; its log files keep everything.
    """
    import ray.data

    logging.getLogger("ray").setLevel(logging.ERROR)
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1  # a block whose worker died is dropped; the driver reports its files


def _rows(dataset, stall_s: float) -> Iterator[dict]:
    """``dataset.iter_rows()`` read by a thread, so that the driver can stop waiting after ``stall_s``."""
    pipe: queue.Queue = queue.Queue()

    def pump() -> None:
        try:
            for row in dataset.iter_rows():
                pipe.put(("row", row))
            pipe.put(("end", None))
        except BaseException as exc:  # reported by the driver, not lost in a thread
            pipe.put(("error", exc))

    threading.Thread(target=pump, name="ray-rows", daemon=True).start()
    while True:
        try:
            kind, value = pipe.get(timeout=stall_s)
        except queue.Empty:
            raise _Stalled from None
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def _one_pass(items: list[dict], blocks: int, pool: Workers, actor_args: tuple, opts: RayOptions,
              retries: int, on_row: Callable[[dict], None]) -> str | None:
    """Run ``items`` through the actor pool in ``blocks`` blocks; ``on_row`` gets each status row.

    A block whose worker dies is run again ``retries`` times, then dropped. Returns None,
    or why the pass ended before every item had its row.
    """
    import ray

    class Bound(FileUpscaler):
        # the arguments travel with the class, not in the object store, where a restarted
        # actor could find them gone
        def __init__(self) -> None:
            super().__init__(*actor_args)

    dataset = ray.data.from_items(items, override_num_blocks=max(1, min(blocks, len(items))))
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for the retry bounds, which the default (forever) needs
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = dataset.map_batches(
            Bound,
            batch_size=1,  # one file per call; a GPU actor refuses a whole block (batch_size=None)
            batch_format="numpy",
            # one block at a time per actor: a dying worker takes only its own block with it
            compute=ray.data.ActorPoolStrategy(size=pool.count, max_tasks_in_flight_per_actor=1),
            num_cpus=pool.cpus,
            num_gpus=1 if pool.gpu else 0,
            max_restarts=-1,  # a dead actor is replaced ...
            max_task_retries=retries,  # ... but a block that kills it is not retried forever
        )
    try:
        for row in _rows(dataset, opts.stall_s):
            on_row(row)
    except _Stalled:
        # the reading thread is left blocked; it must not reconnect on its own when we shut down
        import ray._private.auto_init_hook as auto_init

        auto_init.enable_auto_connect = False
        return f"no file finished for {opts.stall_s:g} s"
    except Exception as exc:
        return f"the Ray job failed: {failure_reason(exc)}"
    return None


def _remove_temps(dst: Path) -> None:
    """Remove what a writer killed mid-write left: the dead temporary files of ``dst`` (see ``files``)."""
    remove_stale_temporaries(dst.parent, dst)


def _actor_args(upscaler_args: dict, pool: Workers, spec: OutputSpec) -> tuple:
    args = dict(upscaler_args, device="cuda" if pool.gpu else "cpu")
    if args.get("weights") is not None and not is_uri(str(args["weights"])):
        args["weights"] = str(Path(args["weights"]).absolute())
    return args, pool.cpus, spec


def _exists(existing: set[str]):
    """The pre-screen's view of outputs: a local path as the local batch sees it (a folder or
    a pipe fails, a file is skipped); on an object store, listed ones are files."""
    return lambda job: "file" if str(job.dst) in existing else None if is_uri(job.dst) else local_output(job)


def run_jobs(
    jobs: Sequence[Job],
    upscaler_args: dict,
    *,
    options: RayOptions | None = None,
    spec: OutputSpec | None = None,
    events: BatchEvents | None = None,
    on_warning: Callable[[str], None] = lambda message: None,
) -> list[Outcome]:
    """:func:`lia_upscale.batch.run_jobs` on a Ray cluster; outcomes in the order files finish.

    ``upscaler_args`` are :class:`~lia_upscale.api.Upscaler`'s keyword arguments (``device``
    picks the actors' kind, see :func:`~.plan.plan_workers`; a weights path must be visible
    to every node). ``spec`` as for the local batch: existing outputs are skipped unless
    ``spec.overwrite``. A file whose worker
    dies is run once more alone, then reported failed; the batch ends when every planned
    file has an outcome, or stops after ``options.stall_s`` without progress. Raises
    UsageError when the cluster cannot be joined or cannot run the pool.
    """
    import ray

    opts = options or RayOptions()
    spec = spec or OutputSpec()
    ev = events or BatchEvents()
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        ev.on_outcome(outcome)

    existing = set() if spec.overwrite else existing_outputs(jobs)
    settled, left = prescreen(jobs, spec.overwrite, _exists(existing))
    for outcome in settled:
        report(outcome)
    todo: dict[str, Job] = {on_worker(job.src): job for job in left}
    if not todo:
        return outcomes
    if not isinstance(sys.stdout, _MainThreadStdout):
        # left in place: Ray's threads can still print after ray.shutdown() returns
        sys.stdout = _MainThreadStdout(sys.stdout)  # type: ignore[assignment]
    _quiet_ray()
    started_here = connect(opts.address)
    try:
        _on_cluster(todo, upscaler_args, opts, spec, report, on_warning)
    finally:
        if started_here:
            ray.shutdown()
    return outcomes


def _on_cluster(todo: dict[str, Job], upscaler_args: dict, opts: RayOptions, spec: OutputSpec,
                report: Callable[[Outcome], None], on_warning: Callable[[str], None]) -> None:
    """Run ``todo`` (worker-side source name -> job) on the connected cluster; every job gets an outcome."""
    import ray

    pool, note = plan_workers(ray.cluster_resources(), upscaler_args.get("device", "auto"),
                              opts.workers, opts.threads)
    if note:
        on_warning(note)
    if len([n for n in ray.nodes() if n.get("Alive")]) > 1 and any(
            not is_uri(n) for job in todo.values() for n in (job.src, job.dst)):
        on_warning("plain paths on a multi-node cluster: every node must see them at the same path")
    actor_args = _actor_args(upscaler_args, pool, spec)

    def on_row(row: dict) -> None:
        key = str(row["key"])
        job = todo.pop(key, None)
        if job is not None:  # the error names the file as the user did, not as the worker opened it
            error = str(row["error"]).replace(key, str(job.src)) or None
            report(Outcome(job, str(row["status"]), float(row["seconds"]), error))

    def items() -> list[dict]:
        return [{"src": key, "dst": on_worker(job.dst), "fmt": job.fmt} for key, job in todo.items()]

    why = _one_pass(items(), pool.count * BLOCKS_PER_WORKER, pool, actor_args, opts, opts.retries, on_row)
    if todo and why is None and len(todo) > 1:
        # a worker died on a block: its files again, one block each and no retry, so only
        # the culprit fails
        why = _one_pass(items(), len(todo), pool, actor_args, opts, 0, on_row)
    for job in list(todo.values()):
        if not is_uri(job.dst):
            _remove_temps(Path(job.dst))
        report(Outcome(job, "failed", 0.0, why or CRASHED))
    todo.clear()
