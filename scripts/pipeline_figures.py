"""Issue 24's figures: the API's overhead, the CLI before and after the one pipeline, and the
peak resident memory of a 12-MP x4 folder under --max-memory.

    python scripts/pipeline_figures.py BASELINE_TREE [--only api,cli,memory] [--out docs/pipeline_figures.json]

BASELINE_TREE is a checkout of the code before the change (``git worktree add --detach
/tmp/base COMMIT``); this tree is the one the script lies in. Each case runs in its own
process with ``PYTHONPATH`` naming its tree; the two trees alternate, one run each, and
ratios come from the same run. Inputs: four 1152x864 crops of the first camera photos in
../shared/datasets/large (made in a temporary folder), ../shared/datasets/phone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SHARED = HERE.parent / "shared" / "datasets"


def _run(tree: Path, args: list[str], timed: bool = False) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, *args]
    if timed:
        cmd = ["/usr/bin/time", "-v", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def api(base: Path) -> dict:
    """This tree's scripts/api_overhead.py (upscale(PIL) / Engine.run at 1 MP, default photo x4) on both trees."""
    out = {}
    for name, tree in (("before", base), ("after", HERE)):
        _, text = _run(tree, [str(HERE / "scripts" / "api_overhead.py"), "--size", "1024", "--repeats", "2"])
        out[name] = json.loads(text.strip().splitlines()[-1])
    return out


def _crops(folder: Path) -> None:
    from PIL import Image, ImageOps

    for i, src in enumerate(sorted((SHARED / "large").rglob("*.JPG"))[:4]):
        with Image.open(src) as im:
            ImageOps.exif_transpose(im).convert("RGB").crop((0, 0, 1152, 864)).save(folder / f"crop{i}.jpg", quality=95)


def cli(base: Path) -> dict:
    """lia-upscale on four 1-MP crops at x2 (default photo model), before and after."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        _crops(src)
        times = {}
        for name, tree in (("before", base), ("after", HERE)):
            times[name], _ = _run(tree, ["-m", "lia_upscale", str(src), str(Path(tmp) / name), "--scale", "2",
                                         "--quiet", "--overwrite"])
        return {"images": 4, "input": [1152, 864], "seconds": {k: round(v, 2) for k, v in times.items()},
                "after_over_before": round(times["after"] / times["before"], 3)}


def memory() -> dict:
    """Peak RSS of the phone folder (two 12-MP JPEGs) at x4, default model, --max-memory 2G (this tree;
    about 50 min on a loaded 2-core machine)."""
    with tempfile.TemporaryDirectory() as tmp:
        seconds, text = _run(HERE, ["-m", "lia_upscale", str(SHARED / "phone"), str(Path(tmp) / "out"), "--scale", "4",
                                    "--max-memory", "2G", "--quiet"], timed=True)
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
        sizes = sorted(p.stat().st_size for p in (Path(tmp) / "out").iterdir())
    return {"images": 2, "input": [4032, 3024], "max_memory": "2G", "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak_kb * 1024 / 1e9, 3), "peak_rss_gib": round(peak_kb / 2**20, 3),
            "output_bytes": sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("--only", default="api,cli,memory")
    ap.add_argument("--out", type=Path, default=HERE / "docs" / "pipeline_figures.json")
    args = ap.parse_args()
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only.split(","):
        result = {"api": lambda: api(args.baseline), "cli": lambda: cli(args.baseline), "memory": memory}[name]()
        report[name] = result
        print(json.dumps({name: result}), flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
