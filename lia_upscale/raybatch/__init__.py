"""The batch on a Ray cluster (``--ray``): Ray Data actors upscale, the driver plans and reports.

Same planning as the local batch (:func:`lia_upscale.batch.plan_jobs`, plus URIs:
:mod:`.plan`), same per-file work and :class:`~lia_upscale.batch.Outcome` rows
(:mod:`.worker`: the actor reads, upscales and writes each file itself), and a driver
that feeds Ray Data, reads the status rows and reconciles: a planned file without a row
is reported failed, never lost (:mod:`.run`).

Only this package touches ray (and pyarrow, which comes with it), and only inside
functions: importing it needs neither; running it needs ``pip install 'lia-upscale[ray]'``.
Plain paths must name a file system that every node mounts at the same path; URIs
(``s3://``, ``gs://``, ...) go through ``pyarrow.fs`` on every node.
"""

from __future__ import annotations

from .plan import RayOptions, Workers, is_uri, plan, plan_workers
from .run import run_jobs
from .worker import CRASH_HOOK_ENV, CRASHED

__all__ = ["CRASH_HOOK_ENV", "CRASHED", "RayOptions", "Workers", "is_uri", "plan", "plan_workers", "run_jobs"]
