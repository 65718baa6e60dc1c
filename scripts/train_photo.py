"""Background trainer behind the shipped photo models (the same `train()` call as
`lia-upscale train --degradation photo --init ...`), logging every 100 iterations.

    python scripts/train_photo.py SCALE ITERATIONS PATCH [INIT] [LR] [CAMERA_PROB] [TAG] [LOSS] [SEED] [PHONE_PROB] [DATA]

Fine-tunes INIT (default: the official PlainUSR-S checkpoint of that scale, MIT,
../shared/weights/plainusr; the variant is the starting checkpoint's) on BSD200 + T91 with the photo degradation family, learning
rate LR (default 2e-4) with cosine decay to 1e-6. Every 500 iterations it scores the
degraded Set14 validation set of scripts/photo_valset.py and keeps a copy of the
checkpoint as runs/photo_x{SCALE}_{ITERATION}.ckpt, so the best one by validation can be
exported (scripts/export_photo.py). CAMERA_PROB ("-": the family's 0.5) is the share of
degraded draws that are one camera pass (TrainConfig.camera_prob); TAG names the run (runs/photo_x{SCALE}{TAG}.*), so two can run side by side; LOSS is l1 (default) or l2; SEED (default 0) draws the patches and degradations, so a
continuation from shipped weights sees new draws. PHONE_PROB (default 0) is the share of
camera passes that are a phone's pipeline (TrainConfig.phone_prob). DATA is "bsd" (default:
BSD200 + T91, versions 1-4) or "photos" (those and the 277 photographs of
../shared/datasets/photos; every image is drawn with a weight of its area). The best
checkpoint by validation so far is kept as runs/photo_x{SCALE}{TAG}_best.ckpt.
Resumes from runs/photo_x{SCALE}{TAG}.ckpt (a committed checkpoint copied there continues a
run of an earlier session).
"""
import shutil
import sys
import time
from pathlib import Path

import torch

from lia_upscale.models import load_model
from lia_upscale.tools.train import TrainConfig, train

torch.set_num_threads(1)
scale, iters, patch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
init = sys.argv[4] if len(sys.argv) > 4 else f"../shared/weights/plainusr/PlainUSRS_Rep_x{scale}.pth"
lr = float(sys.argv[5]) if len(sys.argv) > 5 else 2e-4
camera = float(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] != "-" else None
tag = sys.argv[7] if len(sys.argv) > 7 else ""
loss = sys.argv[8] if len(sys.argv) > 8 else "l1"
seed = int(sys.argv[9]) if len(sys.argv) > 9 else 0
phone = float(sys.argv[10]) if len(sys.argv) > 10 else 0.0
data = sys.argv[11] if len(sys.argv) > 11 else "bsd"
shared = Path(__file__).resolve().parents[1].parent / "shared"
cfg = TrainConfig(variant=load_model(init).variant, scale=scale, iterations=iters, patch=patch, lr=lr, min_lr=1e-6, ema=0.999,
                  warmup=100, eval_every=500, checkpoint_every=100, degradation="photo", init=init, loss=loss,
                  camera_prob=camera, seed=seed, phone_prob=phone)
t0 = time.time()
Path("runs").mkdir(exist_ok=True)
ckpt = Path(f"runs/photo_x{scale}{tag}.ckpt")
log = open(f"runs/photo_x{scale}{tag}.log", "a")


def on(st):
    if st.iteration % 100 == 0 or st.psnr is not None:
        print(f"{st.iteration} {time.time() - t0:.0f}s loss={st.loss:.4f} lr={st.lr:.2e} psnr={st.psnr}",
              file=log, flush=True)
    if st.psnr is not None:
        shutil.copyfile(ckpt, f"runs/photo_x{scale}{tag}_{st.iteration}.ckpt")
        best = Path(f"runs/photo_x{scale}{tag}_best.txt")
        if not best.exists() or st.psnr > float(best.read_text().split()[1]):
            shutil.copyfile(ckpt, f"runs/photo_x{scale}{tag}_best.ckpt")
            best.write_text(f"{st.iteration} {st.psnr}\n")


dirs = [shared / "datasets/train/bsd200", shared / "datasets/train/t91"]
if data == "photos":
    dirs.append(shared / "datasets/photos")
m = train(dirs, ckpt,
          cfg, eval_dir=Path(f"runs/photo_val/x{scale}/set14"), on_status=on)
torch.save(m.state_dict(), f"runs/photo_x{scale}{tag}_final.pt")
print("done", time.time() - t0, file=log, flush=True)
