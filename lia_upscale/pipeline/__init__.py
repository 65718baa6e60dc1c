"""One image through the pipeline: OutputSpec -> ImagePlan -> decode, network, finish, write.

Every door (``Upscaler.upscale`` and ``upscale_file``, the batch's lanes, the stdin/stdout
stream, the Ray worker) is one call of :func:`process` (or of :func:`read` and :func:`start`
where a batch decodes ahead and writes behind), so a guarantee kept here (the format's
limits and the memory budget checked before the network runs, a file never replaced that
appeared meanwhile unless the spec says so, one clear error) holds at every door.
"""

from __future__ import annotations

from .network import NetworkOutput
from .plan import ImagePlan, output_size, plan_image
from .process import Finish, ToPil, process, start
from .sources import read, read_stream
from .spec import OutputSpec

__all__ = ["Finish", "ImagePlan", "NetworkOutput", "OutputSpec", "ToPil", "output_size", "plan_image",
           "process", "read", "read_stream", "start"]
