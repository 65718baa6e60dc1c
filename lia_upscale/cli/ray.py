"""``--ray`` and its options for ``lia-upscale upscale``: plan on the driver, run on a Ray cluster."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import click
from rich.console import Console
from rich.markup import escape

from .app import fail_usage, make_upscaler, no_images, printable
from .options import Count, FiniteFloat

__all__ = ["ray_options", "run_on_ray"]


def ray_options(f):
    """The ``--ray*`` options (``--ray-address`` alone implies ``--ray``)."""
    f = click.option("--ray-stall-timeout", type=FiniteFloat(min=0, min_open=True, max=10**7), default=1800,
                     show_default=True, help="Seconds without a finished file after which the Ray batch stops.")(f)
    f = click.option("--ray-threads", type=Count(1, 1024), default=1, show_default=True,
                     help="CPUs and torch threads per CPU actor.")(f)
    f = click.option("--ray-workers", type=Count(1, 100_000), default=None,
                     help="Actors (default: one per GPU, or the cluster's CPUs less one).")(f)
    f = click.option("--ray-address", default=None, help="The Ray cluster to join (default: RAY_ADDRESS).")(f)
    f = click.option("--ray", "use_ray", is_flag=True,
                     help="Run on a Ray cluster (--ray-address or RAY_ADDRESS, else a local one); "
                          "needs the ray extra.")(f)
    return f


def run_on_ray(inputs, output, spec, recursive: bool, upscaler_args: dict, ray_args: dict,
               console: Console, run_batch: Callable[[list, Callable], int]) -> int:
    """Plan ``inputs`` (paths or URIs) under the job's ``spec``, check the model here, run on
    Ray; the exit status.

    ``run_batch(jobs, run)`` is the CLI's display (progress, JSON rows, summary), shared
    with the local batch; ``run(events)`` runs the jobs.
    """
    if importlib.util.find_spec("ray") is None:  # only raybatch imports ray
        fail_usage("--ray needs the ray extra: pip install 'lia-upscale[ray]'")
    from .. import raybatch
    from ..batch import UsageError

    options = raybatch.RayOptions(ray_args["ray_address"], ray_args["ray_workers"], ray_args["ray_threads"],
                                  stall_s=ray_args["ray_stall_timeout"])
    try:
        jobs = raybatch.plan(inputs, output, spec, recursive=recursive)
    except (UsageError, OSError) as exc:
        fail_usage(str(exc))
    if not jobs:
        fail_usage(no_images(inputs))
    # the model is checked here, where an error is a usage error (exit 2), before any actor loads it
    weights = upscaler_args["weights"]
    if weights is None or not raybatch.is_uri(weights):
        make_upscaler(console, **dict(upscaler_args, device="cpu", precision="auto"))

    def run(events) -> None:
        try:
            raybatch.run_jobs(jobs, upscaler_args, options=options, spec=spec, events=events,
                              on_warning=lambda msg: console.log(f"[yellow]warning:[/] {escape(printable(msg))}"))
        except UsageError as exc:
            fail_usage(escape(str(exc)))

    return run_batch(jobs, run)
