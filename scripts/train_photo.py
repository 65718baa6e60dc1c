"""Background trainer behind the shipped photo models (the same `train()` call as
`lia-upscale train --degradation photo --init ...`), logging every 100 iterations.

    python scripts/train_photo.py SCALE ITERATIONS PATCH

Fine-tunes the official PlainUSR-S checkpoint of that scale (MIT, ../shared/weights/plainusr)
on BSD200 + T91 with the photo degradation family, scoring the degraded Set14 validation set
of scripts/photo_valset.py every 500 iterations. Resumes from runs/photo_x{SCALE}.ckpt.
"""
import sys
import time
from pathlib import Path

import torch

from lia_upscale.tools.train import TrainConfig, train

torch.set_num_threads(1)
scale, iters, patch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
shared = Path(__file__).resolve().parents[1].parent / "shared"
cfg = TrainConfig(variant="S", scale=scale, iterations=iters, patch=patch, lr=2e-4, min_lr=1e-6, ema=0.999,
                  warmup=100, eval_every=500, checkpoint_every=100, degradation="photo",
                  init=f"../shared/weights/plainusr/PlainUSRS_Rep_x{scale}.pth")
t0 = time.time()
Path("runs").mkdir(exist_ok=True)
log = open(f"runs/photo_x{scale}.log", "a")


def on(st):
    if st.iteration % 100 == 0 or st.psnr is not None:
        print(f"{st.iteration} {time.time() - t0:.0f}s loss={st.loss:.4f} lr={st.lr:.2e} psnr={st.psnr}",
              file=log, flush=True)


m = train([shared / "datasets/train/bsd200", shared / "datasets/train/t91"], Path(f"runs/photo_x{scale}.ckpt"),
          cfg, eval_dir=Path(f"runs/photo_val/x{scale}/set14"), on_status=on)
torch.save(m.state_dict(), f"runs/photo_x{scale}_final.pt")
print("done", time.time() - t0, file=log, flush=True)
