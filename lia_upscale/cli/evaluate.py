"""``lia-upscale eval FOLDER``: PSNR-Y / SSIM-Y over LR/HR pairs, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import LiaError
from .app import engine_options, fail, fail_usage, main, make_console, make_upscaler, model_options


@main.command("eval")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@model_options
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_cmd(folder, weights, model_name, denoise, tile, precision, device, tta, threads, as_json) -> None:
    """PSNR-Y / SSIM-Y over the *_LR.png / *_HR.png pairs in FOLDER (BasicSR protocol).

    The default model is the clean one; with --denoise and no model, the photo one.
    """
    from ..engine.threads import cpu_threads
    from ..tools.evaluate import evaluate, find_pairs, pair_scale

    console = make_console()
    try:
        pairs = find_pairs(Path(folder))
        scale = pair_scale(pairs)
    except LiaError as exc:
        fail_usage(str(exc))
    upscaler = make_upscaler(console, model=model_name, weights=weights,
                              scale=None if (weights or model_name) else scale,
                              purpose="clean" if denoise is None else "photo", denoise=denoise,
                              device=device, precision=precision, tile=tile, tta=tta, threads=threads)
    if upscaler.scale != scale:
        fail_usage(f"the pairs in {folder} are x{scale} but the model is x{upscaler.scale}")
    try:
        result = evaluate(pairs, lambda rgb: upscaler.upscale_tensor(rgb).permute(1, 2, 0).numpy(), scale)
    except LiaError as exc:
        fail(str(exc), 1)
    if as_json:
        out = result.as_json()
        out["model"] = str(upscaler.model.source)
        out["variant"] = upscaler.model.variant
        out["denoise"] = upscaler.model.denoise
        out["tta"] = upscaler.tta
        out["threads"] = cpu_threads()
        print(json.dumps(out))
        return
    strength = "" if upscaler.model.denoise is None else f", denoise {upscaler.model.denoise:g}"
    title = f"{folder}  ({upscaler.model.source}, x{scale}{strength}{', tta' if upscaler.tta else ''})"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("image")
    table.add_column("PSNR-Y", justify="right")
    table.add_column("SSIM-Y", justify="right")
    for name, p, s in result.per_image:
        table.add_row(escape(name), f"{p:.3f}", f"{s:.4f}")
    table.add_row("[bold]mean", f"[bold]{result.psnr_y:.3f}", f"[bold]{result.ssim_y:.4f}")
    Console().print(table)
