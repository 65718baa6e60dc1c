"""The photo fine-tune on one CUDA GPU within a fixed wall-clock budget; CPU workers make the degradations.

    python scripts/train_gpu.py [--pack runs/train_pack] [--val runs/photo_val/x4/set14] [--out $OUT]
                                [--init weights/plainusr-l-x4.safetensors] [--budget-s 540] [--amp]

The same recipe as ``scripts/train_photo.py`` (``lia_upscale.tools.train``; the defaults are
those of the CPU run from the official L checkpoint on all the photographs: ``train_photo.py 4
6000 40 ../shared/weights/plainusr/PlainUSRL_Rep_x4.pth 2e-4 0.8 Q l1 4 0.25 photos``, with a
batch of 64; the official checkpoint ships as weights/plainusr-l-x4.safetensors, so it travels
with the repository): the photo
degradation family (``--camera-prob``, ``--phone-prob``), L1 against the clean HR patch,
Adam (0.9, 0.99), linear warm-up, cosine decay to ``--min-lr``, random flips and
transposes, an EMA of the weights that is what gets scored and written. What differs is
the scale of it: the batches are degraded by ``--workers`` CPU processes (a torch
DataLoader over an endless stream of patches, each worker with its own seeded numpy
generator) while the GPU trains, and the schedule runs on the clock rather than on an
iteration count: the cosine decays over ``--budget-s`` seconds, less the time kept for the
final validation. ``--iterations`` caps the count too (a dry run). ``--amp`` runs the
forward and backward in bfloat16 autocast (the weights and Adam stay float32).

The data is a training pack (``scripts/make_train_pack.py``: JPEG-97 tiles), each tile drawn
with a weight of its area. Validation is a folder of ``*_HR.png``/``*_LR.png`` pairs
(``scripts/photo_valset.py``'s degraded Set14), scored whole-image in float32 before the
run, every ``--eval-every`` seconds and at the end.

Writes to ``--out`` (default ``$OUT``, else runs/gpu_out): ``ema.safetensors`` (the EMA
weights, our format), ``scores.json`` (validation PSNR-Y at the start, during and at the
end, iterations, patches per second, the seconds the GPU waited for the workers' batches,
the arguments, the device) and ``train.log``. Wall
time, GPU scheduling and bfloat16 make a GPU run not bit-for-bit reproducible: its weights
are validated on the CPU (``scripts/photo_quality.py --weights-x4``) before they ship.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lia_upscale.models import load_model, save_weights
from lia_upscale.tools.degradations import PhotoDegradation
from lia_upscale.tools.train import benchmark_pairs, evaluate_psnr, load_pairs

ROOT = Path(__file__).resolve().parents[1]


class Patches(torch.utils.data.IterableDataset):
    """An endless stream of (LR, HR) uint8 patch pairs (C, H, W), degraded on the worker's CPU.

    Each worker reads the pack itself (nothing large is sent to it), draws tiles with a
    weight of their area and everything else from its own generator, seeded from ``seed``
    and its worker id.
    """

    def __init__(self, pack: Path, family: PhotoDegradation, scale: int, patch: int, seed: int):
        self.pack, self.family, self.scale, self.patch, self.seed = pack, family, scale, patch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:
            torch.set_num_threads(1)  # the degradations' torch ops: one core per worker
        tiles = [hr for hr, _ in load_pairs([self.pack], self.scale, self.patch * self.scale, with_lr=False)]
        areas = np.array([t.shape[0] * t.shape[1] for t in tiles], dtype=np.float64)
        weights = areas / areas.sum()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        s, p = self.scale, self.patch
        while True:
            hr = tiles[int(rng.choice(len(tiles), p=weights))]
            y = int(rng.integers(0, hr.shape[0] // s - p + 1))
            x = int(rng.integers(0, hr.shape[1] // s - p + 1))
            hr_patch = np.ascontiguousarray(hr[y * s : (y + p) * s, x * s : (x + p) * s])
            lr_patch = self.family.degrade(hr_patch, s, rng)
            lr_t, hr_t = torch.from_numpy(lr_patch).permute(2, 0, 1), torch.from_numpy(hr_patch).permute(2, 0, 1)
            if rng.integers(2):
                lr_t, hr_t = lr_t.flip(2), hr_t.flip(2)
            if rng.integers(2):
                lr_t, hr_t = lr_t.flip(1), hr_t.flip(1)
            if rng.integers(2):
                lr_t, hr_t = lr_t.transpose(1, 2), hr_t.transpose(1, 2)
            yield lr_t.contiguous(), hr_t.contiguous()


def lr_at(t: float, warmup: float, lr: float, min_lr: float) -> float:
    """The learning rate at fraction ``t`` of the schedule: linear warm-up over ``warmup``, then cosine."""
    if t < warmup:
        return lr * max(t / warmup, 1e-3)
    u = min(1.0, (t - warmup) / max(1e-9, 1.0 - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * u))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", type=Path, default=ROOT / "runs" / "train_pack")
    ap.add_argument("--val", type=Path, default=ROOT / "runs" / "photo_val" / "x4" / "set14")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "runs" / "gpu_out"))
    ap.add_argument("--init", default=str(ROOT / "weights" / "plainusr-l-x4.safetensors"),
                    help="weight file or model name to fine-tune (its variant and scale are the run's)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=540.0, help="wall-clock seconds for the whole run")
    ap.add_argument("--iterations", type=int, default=None, help="stop after this many iterations too")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patch", type=int, default=40, help="LR patch edge")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--min-lr", type=float, default=1e-6)
    ap.add_argument("--warmup", type=float, default=0.03, help="share of the schedule spent warming up")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--camera-prob", type=float, default=0.8)
    ap.add_argument("--phone-prob", type=float, default=0.25)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast for the forward and backward")
    ap.add_argument("--eval-every", type=float, default=120.0, help="seconds between validations")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "train.log", "a")

    def say(text: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {text}", file=log, flush=True)

    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    start = load_model(args.init)
    model = start.module.to(dev).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    scale = start.scale
    tiles = len(load_pairs([args.pack], scale, args.patch * scale, with_lr=False))  # fails here if none
    family = replace(PhotoDegradation(), camera_prob=args.camera_prob, phone_prob=args.phone_prob)
    loader = torch.utils.data.DataLoader(
        Patches(args.pack, family, scale, args.patch, args.seed), batch_size=args.batch, num_workers=args.workers,
        pin_memory=dev.type == "cuda", persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None)
    val = benchmark_pairs(args.val)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    before = time.monotonic()
    scores = {"start": evaluate_psnr(ema, val, dev), "during": []}
    eval_s = time.monotonic() - before  # what one validation costs, kept back for the end
    say(f"{start.variant} x{scale} from {args.init}; {tiles} tiles; validation {scores['start']:.3f} dB "
        f"({eval_s:.1f} s)")
    # the schedule's clock starts now; it ends early enough to score and write the result
    t0 = time.monotonic()
    train_s = max(1.0, args.budget_s - (t0 - started) - 1.5 * eval_s - 2.0)
    it, seen, last_eval, waited = 0, 0, t0, 0.0
    data = iter(loader)
    while True:
        now = time.monotonic()
        t = (now - t0) / train_s
        if t >= 1.0 or (args.iterations is not None and it >= args.iterations):
            break
        lr_now = lr_at(t, args.warmup, args.lr, args.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr_now
        before = time.monotonic()
        lr_b, hr_b = next(data)
        waited += time.monotonic() - before
        lr_b = lr_b.to(dev, non_blocking=True).float().div_(255)
        hr_b = hr_b.to(dev, non_blocking=True).float().div_(255)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
            loss = F.l1_loss(model(lr_b).float(), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1.0 - args.ema)
        it += 1
        seen += lr_b.shape[0]
        if it % 100 == 0:
            say(f"it {it} loss {float(loss):.4f} lr {lr_now:.2e} {seen / (time.monotonic() - t0):.0f} patches/s, "
                f"{waited:.0f} s waiting for data")
        if time.monotonic() - last_eval >= args.eval_every and 1.0 - t > (eval_s * 2) / train_s:
            psnr = evaluate_psnr(ema, val, dev)
            scores["during"].append({"iteration": it, "seconds": round(time.monotonic() - t0, 1), "psnr_y": psnr})
            say(f"it {it} validation {psnr:.3f} dB")
            last_eval = time.monotonic()
    train_time = time.monotonic() - t0
    scores["end"] = evaluate_psnr(ema, val, dev)
    say(f"it {it} end validation {scores['end']:.3f} dB")
    header = save_weights(args.out / "ema.safetensors", ema.float().cpu(), start.variant, scale,
                          extra={"trained_from": str(args.init), "iterations": str(it)})
    scores.update(iterations=it, patches=seen, train_seconds=round(train_time, 1),
                  patches_per_second=round(seen / max(train_time, 1e-9), 1),
                  # time the GPU waited for the workers: near train_seconds means more workers would help
                  data_wait_seconds=round(waited, 1),
                  wall_seconds=round(time.monotonic() - started, 1), variant=header.variant, scale=scale,
                  device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
                  args={k: str(v) for k, v in vars(args).items()})
    (args.out / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    say(f"wrote {args.out / 'ema.safetensors'} and scores.json")
    log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
