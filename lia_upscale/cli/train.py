"""``lia-upscale train``: the training loop's progress display."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import LiaError
from .app import fail_usage, interrupt_status, main, make_console, say
from .options import MAX_BATCH, MAX_PATCH, MAX_SEED, Count, FiniteFloat, Threads


@main.command("train")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The .safetensors to export.")
@click.option("--variant", type=click.Choice(["U", "T", "S", "M", "base", "L"]), default="U", show_default=True)
@click.option("--scale", type=click.Choice(["2", "4"]), default="4", show_default=True)
@click.option("--iterations", type=Count(1, 10**9), default=30000, show_default=True)
@click.option("--batch", type=Count(1, MAX_BATCH), default=16, show_default=True)
@click.option("--patch", type=Count(8, MAX_PATCH), default=None, help="LR patch edge (default 40 at x4, 48 at x2).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True, max=1), default=2e-3, show_default=True)
@click.option("--seed", type=Count(0, MAX_SEED), default=0, show_default=True)
@click.option("--eval-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of *_LR/*_HR pairs (e.g. Set5) scored every --eval-every iterations.")
@click.option("--eval-every", type=Count(1, 10**9), default=2000, show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Resumable checkpoint (default: OUT with .ckpt); an existing one is resumed.")
@click.option("--degradation", type=click.Choice(["bicubic", "photo"]), default="bicubic", show_default=True,
              help="How LR patches are made: MATLAB bicubic (benchmarks) or camera-like blur, noise and JPEG.")
@click.option("--init", "init", default=None,
              help="Weight file or model name to fine-tune (default: start as nearest-neighbour).")
@click.option("--ema", type=FiniteFloat(0, 1, max_open=True), default=0.0, show_default=True,
              help="Decay of a moving average of the weights, scored and exported instead (e.g. 0.999).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=Threads(), default=None, help="CPU threads, at most the machine's (default: torch's).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (never --init or the checkpoint).")
def train_cmd(data, out, variant, scale, iterations, batch, patch, lr, seed, eval_dir, eval_every,
              degradation, init, ema, checkpoint, device, threads, overwrite) -> None:
    """Train a PlainUSR/LIA network on folders of HR images and export it as .safetensors."""
    import torch

    from .. import models
    from ..engine.device import choose_device
    from ..tools.train import TrainConfig, train, training_files

    if threads:
        torch.set_num_threads(threads)
    s = int(scale)
    cfg = TrainConfig(variant=variant, scale=s, iterations=iterations, batch=batch,
                      patch=patch or (40 if s == 4 else 48), lr=lr, seed=seed, eval_every=eval_every,
                      degradation=degradation, init=init or "", ema=ema)
    console = make_console()
    ckpt = Path(checkpoint) if checkpoint else Path(out).with_suffix(".ckpt")
    if Path(out).absolute() == ckpt.absolute():
        fail_usage(f"--out {out} is the checkpoint; give another --out or --checkpoint")
    training_images = training_files([Path(d) for d in data])
    try:  # before hours of training, not after
        models.check_destination(out, [p for p in (init, ckpt) if p] + training_images, overwrite=overwrite)
        if ckpt.exists() and any(ckpt.samefile(p) for p in training_images):
            raise LiaError(f"{ckpt}: is a training image; the checkpoint needs a path of its own (--checkpoint)")
    except LiaError as exc:
        fail_usage(str(exc))
    progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=console, disable=not console.is_terminal)
    task = progress.add_task("train", total=iterations, info="")
    best = {"psnr": None}

    def on_status(st):
        if st.psnr is not None:
            best["psnr"] = st.psnr
            progress.console.log(f"iteration {st.iteration}: Set PSNR-Y {st.psnr:.3f} dB")
        psnr = f" psnr {best['psnr']:.2f}" if best["psnr"] is not None else ""
        progress.update(task, completed=st.iteration, info=f"loss {st.loss:.4f} lr {st.lr:.1e}{psnr}")

    try:
        with progress:
            module = train([Path(d) for d in data], ckpt, cfg, eval_dir=Path(eval_dir) if eval_dir else None,
                           device=str(choose_device(device)), on_status=on_status)
        models.save_weights(Path(out), module.cpu(), variant=variant, scale=s, overwrite=overwrite)
    except LiaError as exc:
        fail_usage(str(exc))
    except KeyboardInterrupt as exc:
        say(console, f"interrupted; resume with the same command (checkpoint {ckpt})")
        sys.exit(interrupt_status(exc))
    say(console, f"wrote {out}")
