"""Peak memory and CPU time of the CLI on photo-sized inputs (issue 14's figures).

Each case is one `lia-upscale` process on one photo, measured by the kernel
(`resource.getrusage(RUSAGE_CHILDREN)`: peak RSS, user and system CPU seconds), so
nothing of this script's own memory counts. The inputs are made from the first camera
photo of ../shared/datasets/large/ (6 MP, resized with Lanczos to 3, 12 and 48 MP, saved as
JPEG quality 95) in a temporary folder. Usage:

    python scripts/memory_bench.py [--quick] [--out docs/memory_bench.json]

Cases: 12 MP x4 to JPEG with the default model (lia-photo-x4); 48 MP x2 to PNG with the
default x2 model (with `--max-pixels 60000000`, as a medium-format batch would run); PNG output at x2 from 3, 12 and 48 MP input (flatness). `--quick` runs only the
3 and 12 MP PNG cases and the 12 MP JPEG.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT.parent / "shared" / "datasets" / "large"
SIZES = {"3MP": (2000, 1500), "12MP": (4032, 3024), "48MP": (8064, 6048)}


def _photo(folder: Path, name: str) -> Path:
    path = folder / f"{name}.jpg"
    if not path.exists():
        src = next(p for p in sorted(LARGE.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg"))
        with Image.open(src) as im:
            im.convert("RGB").resize(SIZES[name], Image.Resampling.LANCZOS).save(path, quality=95)
    return path


def _run(args: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lia_upscale", *args, "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"lia-upscale {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    # ru_maxrss of children is the largest of any child so far: each case runs in a fresh
    # grandchild-free process, and cases run in increasing size within a kind
    return {"wall_s": round(wall, 1), "user_s": round(user, 1), "sys_s": round(system, 1),
            "sys_over_user": round(system / max(user, 1e-9), 3), "peak_rss_gb": round(after.ru_maxrss / 2**20, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cases = [("PNG x2", "3MP", ["--scale", "2", "--format", "png"]),
             ("PNG x2", "12MP", ["--scale", "2", "--format", "png"]),
             ("JPEG x4", "12MP", ["--scale", "4", "--format", "jpg"])]
    if not args.quick:
        cases.append(("PNG x2", "48MP", ["--scale", "2", "--format", "png", "--max-pixels", "60000000"]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind, size, flags in cases:
            src = _photo(folder, size)
            out = folder / "out"
            out.mkdir(exist_ok=True)
            # a fresh interpreter per case: ru_maxrss of children is a running maximum, so
            # each case is measured by a child of its own measuring child
            code = ("import json, resource, subprocess, sys; from scripts.memory_bench import _run; "
                    f"print(json.dumps(_run({[str(src), str(out), '--overwrite', *flags]!r})))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if proc.returncode:
                raise SystemExit(proc.stderr.strip().splitlines()[-1])
            row = {"case": f"{size} {kind}", **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
            for f in out.iterdir():
                f.unlink()
    if args.out:
        args.out.write_text(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count(), "rows": rows},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
