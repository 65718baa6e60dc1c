"""Write the clean endpoints of the photo models' strength into weights/ (they ship in the wheel).

    python scripts/ship_endpoints.py

Each photo model with a ``clean_endpoint`` on its card was fine-tuned from an official
PlainUSR checkpoint (MIT); that checkpoint, from ../shared/weights/plainusr, checked against
the sha256 on its official card and converted to our safetensors format with its origin in
the metadata, is the other end of ``--denoise``. Prints each file's size and sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lia_upscale.models import ALL_CARDS, CARDS, read_pth, save_weights

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT.parent / "shared" / "weights" / "plainusr"


def main() -> None:
    for photo in ALL_CARDS:
        if photo.clean_endpoint is None:
            continue
        # the endpoint is named like the official card it converts: plainusr-l-x4.safetensors
        official = CARDS[photo.clean_endpoint.removesuffix(".safetensors")]
        src = OFFICIAL / official.file
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if digest != official.sha256:
            raise SystemExit(f"{src}: sha256 {digest} is not the published {official.sha256}")
        out = ROOT / "weights" / photo.clean_endpoint
        save_weights(out, read_pth(src), official.variant, official.scale,
                     extra={"name": official.name, "origin": official.url or "", "origin_sha256": digest})
        print(f"{out.name} (clean end of {photo.pinned}): {out.stat().st_size} bytes, "
              f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
