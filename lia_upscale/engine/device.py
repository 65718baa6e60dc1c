"""Device and precision choice: ``auto`` means CUDA float16 when a GPU is present, else CPU float32."""

from __future__ import annotations

import torch

from ..errors import DeviceError

__all__ = ["DEVICES", "PRECISIONS", "choose_device", "choose_dtype"]

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable torch.device, or DeviceError."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available (torch {torch.__version__})")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise DeviceError(f"--device {name}: {exc}") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def choose_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` | ``fp32`` | ``fp16`` | ``bf16`` -> dtype; ``auto`` is float16 on CUDA, else float32."""
    precision = precision.strip().lower()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16: not supported by {torch.cuda.get_device_name(device)}")
    return PRECISIONS[precision]
