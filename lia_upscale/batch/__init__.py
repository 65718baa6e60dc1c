"""Batch jobs: plan files, folders and globs into jobs (:mod:`.plan`), run them pipelined (:mod:`.run`)."""

from __future__ import annotations

from .plan import Job, UsageError, is_image, job_format, plan_jobs
from .stream import output_format, upscale_stream
from .run import ENCODES_IN_FLIGHT, BatchEvents, Outcome, failure_reason, image_lanes, run_jobs

__all__ = ["Job", "Outcome", "BatchEvents", "ENCODES_IN_FLIGHT", "image_lanes", "plan_jobs", "run_jobs", "UsageError", "output_format", "upscale_stream",
           "failure_reason", "is_image", "job_format"]
