"""A contact sheet of labelled image panels side by side, for the side-by-side scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def save_sheet(panels: list[tuple[str, np.ndarray]], out: Path) -> None:
    """Write ``(label, (H, W, 3) float RGB in [0, 1])`` panels in a row, 8 px apart, labels above."""
    h, w = panels[0][1].shape[:2]
    sheet = Image.new("RGB", (w * len(panels) + 8 * (len(panels) - 1), h + 22), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, rgb) in enumerate(panels):
        x = i * (w + 8)
        sheet.paste(Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)), (x, 22))
        draw.text((x + 4, 4), name, fill="black")
    sheet.save(out, optimize=True)
    print(f"wrote {out} ({sheet.width}x{sheet.height})")
