"""The speed/quality chart of ``lia-upscale bench --plot``, drawn with Pillow alone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import LiaError
from ..files import atomic_write

__all__ = ["tradeoff_points", "draw_tradeoff"]

_SIZE = (1200, 760)
_PLOT = (110, 80, 900, 670)  # left, top, right, bottom of the axes
_SERIES = {  # label: (colour, marker)
    "x4": ((31, 119, 180), "circle"),
    "x2": ((255, 127, 14), "square"),
    "bicubic": ((110, 110, 110), "diamond"),
}


def tradeoff_points(report: dict) -> list[dict]:
    """(label, series, MP/s, PSNR-Y) of every measured model with a PSNR, and bicubic.

    Throughput is the default (tiled) path's, else the whole-image path's, at the first
    input size measured for that model; PSNR-Y comes from the report's evaluation.
    """
    points, seen = [], set()
    for r in report.get("results", []):
        if r.get("psnr_y") is None or r["model"] in seen:
            continue
        case = r["cases"].get("tiled") or r["cases"].get("whole") or r["cases"].get("naive")
        if case is None:
            continue
        seen.add(r["model"])
        points.append({"label": r["variant"], "series": f"x{r['scale']}",
                       "mp_s": case["output_mp_s"], "psnr_y": r["psnr_y"]})
    for b in report.get("bicubic", []):
        if b.get("psnr_y") is not None:
            points.append({"label": f"bicubic x{b['scale']}", "series": "bicubic",
                           "mp_s": b["output_mp_s"], "psnr_y": b["psnr_y"]})
    return points


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, kind: str, colour, r: int = 7) -> None:
    box = (x - r, y - r, x + r, y + r)
    if kind == "circle":
        draw.ellipse(box, fill=colour, outline=(0, 0, 0))
    elif kind == "square":
        draw.rectangle(box, fill=colour, outline=(0, 0, 0))
    else:
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill=colour, outline=(0, 0, 0))


def _nice_step(span: float) -> float:
    raw = span / 8
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def draw_tradeoff(report: dict, path: Path, *, title: str | None = None) -> Path:
    """Draw output MP/s (log x) against PSNR-Y for the report's models and bicubic; write a PNG.

    Raises ValueError when the report holds no point with both numbers.
    """
    points = tradeoff_points(report)
    if not points:
        raise ValueError("no model with both a throughput and a PSNR-Y to plot")
    img = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(img)
    small, normal, large = _font(15), _font(18), _font(22)
    left, top, right, bottom = _PLOT

    xs = [math.log10(p["mp_s"]) for p in points]
    lo, hi = math.floor(min(xs)), math.ceil(max(xs))
    if hi == lo:
        hi += 1
    ys = [p["psnr_y"] for p in points]
    step = _nice_step(max(ys) - min(ys) or 1.0)
    y_lo = math.floor((min(ys) - step / 2) / step) * step
    y_hi = math.ceil((max(ys) + step / 2) / step) * step

    def px(mp_s: float) -> float:
        return left + (math.log10(mp_s) - lo) / (hi - lo) * (right - left)

    def py(psnr: float) -> float:
        return bottom - (psnr - y_lo) / (y_hi - y_lo) * (bottom - top)

    # grid and ticks
    for decade in range(lo, hi + 1):
        for m in range(1, 10):
            if decade == hi and m > 1:
                break
            x = px(m * 10.0**decade)
            major = m == 1
            draw.line([(x, top), (x, bottom)], fill=(215, 215, 215) if major else (240, 240, 240))
            draw.line([(x, bottom), (x, bottom + (8 if major else 4))], fill="black")
            if major or m in (2, 5):
                label = f"{m * 10.0**decade:g}"
                w = draw.textlength(label, font=small if not major else normal)
                draw.text((x - w / 2, bottom + 10), label, fill="black", font=small if not major else normal)
    n_steps = round((y_hi - y_lo) / step)
    for i in range(n_steps + 1):
        v = y_lo + i * step
        y = py(v)
        draw.line([(left, y), (right, y)], fill=(225, 225, 225))
        draw.line([(left - 6, y), (left, y)], fill="black")
        label = f"{v:.2f}".rstrip("0").rstrip(".")
        w = draw.textlength(label, font=normal)
        draw.text((left - 10 - w, y - 10), label, fill="black", font=normal)
    draw.rectangle([left, top, right, bottom], outline="black")

    # points and their labels
    for p in points:
        colour, kind = _SERIES[p["series"]]
        x, y = px(p["mp_s"]), py(p["psnr_y"])
        _marker(draw, x, y, kind, colour)
        draw.text((x + 10, y - 20), p["label"], fill=colour, font=normal)

    # titles and axis labels
    threads = report.get("threads", "?")
    default = (f"PlainUSR: throughput vs Set5 PSNR-Y  ({report.get('device_name', '')}, "
               f"{threads} thread{'' if threads == 1 else 's'})")
    draw.text((left, 25), title or default, fill="black", font=large)
    xlabel = "output megapixels per second (log scale)"
    draw.text(((left + right - draw.textlength(xlabel, font=normal)) / 2, bottom + 40), xlabel,
              fill="black", font=normal)
    ylabel = "PSNR-Y (dB), Set5, at the model's scale"
    w = int(draw.textlength(ylabel, font=normal)) + 4
    tmp = Image.new("RGB", (w, 26), "white")
    ImageDraw.Draw(tmp).text((2, 2), ylabel, fill="black", font=normal)
    tmp = tmp.rotate(90, expand=True)
    img.paste(tmp, (20, int((top + bottom - tmp.height) / 2)))

    # legend
    lx, ly = right + 30, top + 10
    draw.rectangle([lx - 10, ly - 10, _SIZE[0] - 20, ly + 30 * len(_SERIES) + 5], outline=(150, 150, 150))
    names = {"x4": "x4 checkpoints", "x2": "x2 checkpoints", "bicubic": "bicubic (torch)"}
    for i, (series, (colour, kind)) in enumerate(_SERIES.items()):
        y = ly + 12 + 30 * i
        _marker(draw, lx + 8, y, kind, colour)
        draw.text((lx + 26, y - 10), names[series], fill="black", font=normal)
    notes = _notes(report)
    for i, line in enumerate(notes):
        draw.text((lx - 5, ly + 30 * len(_SERIES) + 25 + 20 * i), line, fill=(80, 80, 80), font=small)
    try:  # the one safe writer: never over a device or pipe, nothing half-written
        atomic_write(path, lambda fp: img.save(fp, format="PNG"))
    except OSError as e:
        raise LiaError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _notes(report: dict) -> Sequence[str]:
    results = report.get("results") or [{}]
    first = results[0]
    size = first.get("size")
    lines = []
    if size:
        lines.append(f"input {size[0]}x{size[1]}, {first.get('precision', '')}")
    lines.append("labels: model variant")
    lines.append("speed: default (tiled) path")
    return lines
