"""Background trainer used for the shipped defaults (same function as `lia-upscale train`)."""
import sys, time, torch
from pathlib import Path
from lia_upscale.tools.train import TrainConfig, train
torch.set_num_threads(1)
scale, iters, patch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = TrainConfig(variant="U", scale=scale, iterations=iters, patch=patch, eval_every=2000)
t0 = time.time()
log = open(f"runs/train_x{scale}.log", "a")
def on(st):
    if st.iteration % 100 == 0 or st.psnr is not None:
        print(f"{st.iteration} {time.time()-t0:.0f}s loss={st.loss:.4f} lr={st.lr:.2e} psnr={st.psnr}", file=log, flush=True)
m = train([Path("../shared/datasets/train/bsd200"), Path("../shared/datasets/train/t91")],
          Path(f"runs/u_x{scale}.ckpt"), cfg, eval_dir=Path(f"../shared/datasets/benchmark/Set5/x{scale}"), on_status=on)
torch.save(m.state_dict(), f"runs/u_x{scale}_final.pt")
print("done", time.time()-t0, file=log, flush=True)
