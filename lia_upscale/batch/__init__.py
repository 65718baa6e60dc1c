"""Batch jobs: plan files, folders and globs into jobs (:mod:`.plan`), run them pipelined (:mod:`.run`)."""

from __future__ import annotations

from .plan import Job, UsageError, expand_inputs, is_image, job_format, make_jobs, plan_jobs
from .run import (
    ENCODES_IN_FLIGHT,
    BatchEvents,
    Outcome,
    failure_reason,
    image_lanes,
    local_output,
    prescreen,
    run_jobs,
)

__all__ = ["Job", "Outcome", "BatchEvents", "ENCODES_IN_FLIGHT", "image_lanes", "plan_jobs", "run_jobs", "UsageError",
           "failure_reason", "is_image", "job_format", "local_output", "prescreen", "expand_inputs", "make_jobs"]
