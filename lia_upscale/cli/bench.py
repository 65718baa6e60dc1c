"""``lia-upscale bench``: runs the benchmark and prints its tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import LiaError
from .app import fail, fail_usage, main, make_console, printable
from .options import MAX_TILE, Count, ImageEdges, Threads


@main.command("bench")
@click.option("--model", "model_names", multiple=True, help="A model name (repeatable).")
@click.option("--weights", multiple=True, type=click.Path(exists=True),
              help="A weight file, or a folder of them (repeatable).")
@click.option("--size", "sizes", multiple=True, type=ImageEdges(),
              help="Input size: a square edge (512) or WIDTHxHEIGHT (1152x864); repeatable; default: 512 "
                   "unless --photo.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
              default=("auto",), show_default=True, help="Repeatable; auto: fp32 on the CPU, fp16 and fp32 on CUDA.")
@click.option("--repeats", type=Count(1, 1000), default=3, show_default=True,
              help="Timed runs per case (cases alternate; the median counts).")
@click.option("--threads", "thread_counts", multiple=True, type=Threads(),
              help="CPU threads to measure at (repeatable; default: 1 and all cores).")
@click.option("--photo", is_flag=True,
              help="1-MP (1152x864) and 12-MP (4000x3000) inputs, whole image against tiles (slow; "
                   "with --size, in addition).")
@click.option("--matmul-size", type=Count(0, 16384), default=2048, show_default=True,
              help="Edge of the float32 matmul that gives each thread count's peak (0: skip).")
@click.option("--cases", default="naive,whole,tiled", show_default=True,
              help="Comma-separated subset of naive,whole,tiled, or none.")
@click.option("--tile", type=Count(0, MAX_TILE), default=None,
              help="Tile edge of the tiled case (default: the engine's default for the device).")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurements.")
@click.option("--tile-search/--no-tile-search", default=None, help="Find the largest tile that fits (default: on CUDA).")
@click.option("--eval-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder with x2/ and x4/ *_LR/*_HR pairs (e.g. Set5): adds PSNR-Y and bicubic.")
@click.option("--pipeline", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of images: batch wall time against compute time.")
@click.option("--pipeline-weights", default=None, help="Model for --pipeline (default: the first model).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of throughput against PSNR-Y (needs --eval-dir).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_cmd(model_names, weights, sizes, device, precisions, repeats, thread_counts, photo, matmul_size, cases,
              tile, no_memory, tile_search, eval_dir, pipeline, pipeline_weights, plot, as_json) -> None:
    """Measure throughput, GFLOP/s and memory: the upstream network (naive) against ours, whole and tiled,
    at one thread and all cores, with GFLOP/s as a share of the CPU's float32 matmul peak."""
    import torch

    from ..tools.bench import run_bench
    from ..tools.benchcases import CASES
    from ..engine.device import PRECISIONS, choose_device

    console = make_console()
    chosen = [c.strip() for c in cases.split(",") if c.strip() and c.strip() != "none"]
    if any(c not in CASES for c in chosen):
        fail_usage(f"--cases takes a subset of {','.join(CASES)} (or none), not {cases!r}")
    if plot and not eval_dir:
        fail_usage("--plot needs --eval-dir (PSNR-Y comes from evaluating every model)")
    from .. import images, models

    for name in model_names:  # a name that names nothing is a usage error, as for upscale
        try:
            models.get_card(name)
        except LiaError as exc:
            fail_usage(str(exc))
    if pipeline and not any(p.suffix.lower() in images.FORMAT_SUFFIXES for p in Path(pipeline).rglob("*")):
        fail_usage(f"--pipeline {pipeline}: no images in this folder")
    try:
        dev = choose_device(device)
    except LiaError as exc:
        fail_usage(str(exc))
    dtypes: list = []
    for p in precisions:
        for d in ([torch.float16, torch.float32] if dev.type == "cuda" else [torch.float32]) if p == "auto" \
                else [PRECISIONS[p]]:
            if d not in dtypes:
                dtypes.append(d)
    try:
        report = run_bench(models=model_names, weights=weights, sizes=sizes or (() if photo else (512,)),
                           device=dev, dtypes=dtypes,
                           repeats=repeats, cases=chosen, memory=not no_memory, threads=thread_counts or None,
                           photo=photo, matmul_size=matmul_size, tile=tile,
                           tile_search=tile_search, eval_dir=Path(eval_dir) if eval_dir else None,
                           pipeline=Path(pipeline) if pipeline else None, pipeline_weights=pipeline_weights,
                           on_progress=lambda msg: console.log(msg, markup=False) if console.is_terminal else None)
        if plot:
            from ..tools.plot import draw_tradeoff

            draw_tradeoff(report, Path(plot))
            report["plot"] = str(plot)
    except LiaError as exc:
        fail(str(exc), 1)
    if as_json:
        print(json.dumps(report))
        return
    out = Console(width=None if sys.stdout.isatty() else 150)
    _print_cpu(out, report)
    table = Table(title=f"{report['device_name']} ({report['device']}, median of {report['repeats']}; "
                        f"naive = the upstream network)", title_justify="left")
    for col in ("model", "input", "threads", "prec", "case", "seconds", "out MP/s", "GFLOP/s", "% peak",
                "vs naive", "peak MiB", "max |diff|"):
        table.add_column(col, justify="left" if col in ("model", "case", "prec") else "right")
    for r in report["results"]:
        naive = r["cases"].get("naive")
        for name, c in r["cases"].items():
            speedup = f"{naive['seconds'] / c['seconds']:.2f}x" if naive else ""
            peak = f"{c['peak_mib']:.0f}" if c["peak_mib"] is not None else ""
            diff = f"{c['max_abs_diff']:.1e}" if c["max_abs_diff"] is not None else ""
            share = r.get("peak_fraction", {}).get(name)
            label = name if name != "tiled" else f"tiled {c['tile']}"
            table.add_row(Text(printable(Path(r["model"]).stem)), f"{r['size'][1]}x{r['size'][0]}", str(r.get("threads", "")),
                          "fp32" if name == "naive" else r["precision"], label, f"{c['seconds']:.3f}",
                          f"{c['output_mp_s']:.2f}", f"{c['gflop_s']:.1f}",
                          f"{100 * share:.0f}%" if share is not None else "", speedup, peak, diff)
    if report["results"]:
        out.print(table)
    for r in report["results"]:
        if r.get("paired_ratios"):
            out.print(f"paired ratios (median of per-round), {Path(r['model']).stem} {r['size'][1]}x{r['size'][0]} "
                      f"{r.get('threads', '')} thread(s): "
                      + ", ".join(f"{k.replace('_vs_', ' / ')} {v:.2f}x" for k, v in r["paired_ratios"].items()),
                      markup=False, highlight=False)
    for entry in report.get("fp16_vs_fp32", []):
        out.print(printable(f"fp16 vs fp32, {Path(entry['model']).name} {entry['size'][0]}px: "
                  + ", ".join(f"{k} {v:.2f}x" for k, v in entry.items() if k in ("whole", "tiled"))), markup=False)
    for entry in report.get("largest_tile", []):
        out.print(printable(f"largest tile, {Path(entry['model']).name} {entry['precision']}: {entry['tile']} px"),
                  markup=False)
    if "pipeline" in report:
        p = report["pipeline"]
        out.print(f"pipeline: {p['images']} images ({p['input_mp']:.1f} MP) with {Path(p['model']).name}: "
                  f"wall {p['wall_s']:.2f}s vs compute {p['compute_s']:.2f}s = {p['ratio']:.3f}x "
                  f"(decode {p['decode_s']:.2f}s, finish {p['finish_s']:.2f}s, encode {p['encode_s']:.2f}s to hide; "
                  f"{p['lanes']} image(s) at once, network in the batch {p['network_in_batch_s']:.2f}s"
                  + (f", waiting {p['waiting_s']:.2f}s)" if p["waiting_s"] is not None else ")"), markup=False)
    if plot:
        out.print(printable(f"wrote {plot}"), markup=False)


def _print_cpu(out: Console, report: dict) -> None:
    cpu = report.get("cpu")
    if report["device"] != "cpu" or not cpu:
        return
    out.print(f"CPU: {cpu['model']}, {cpu['cores']} core(s); torch code path {cpu['capability']}; "
              f"flags: {' '.join(cpu['flags']) or 'none found'}", markup=False, highlight=False)
    for p in report.get("matmul_peak", []):
        out.print(f"float32 matmul peak, {p['threads']} thread(s): {p['gflop_s']:.1f} GFLOP/s "
                  f"({p['size']}x{p['size']} torch.mm, best of 5)", markup=False, highlight=False)
