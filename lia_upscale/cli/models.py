"""``lia-upscale models``, ``weights install`` and ``convert``: the registry and weight files."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import LiaError
from .app import fail_usage, main, make_console, say


@main.command("convert")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing DST (never SRC itself, never a device or pipe).")
def convert_cmd(src, dst, overwrite) -> None:
    """Convert an official PlainUSR .pth checkpoint into our validated .safetensors."""
    from .. import models

    try:
        info = models.convert(Path(src), Path(dst), overwrite=overwrite)
    except LiaError as exc:
        fail_usage(str(exc))
    say(make_console(), f"wrote {dst}: {info}")


@main.command("models")
def models_cmd() -> None:
    """List the models lia-upscale knows and where each one's weights are."""
    from .. import models

    table = Table(title="models (use --model NAME; NAME@N pins a version)", title_justify="left", expand=False)
    table.add_column("name", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("about", overflow="fold")
    for card, path in models.list_models():
        if path:
            where = f"[dim]{escape(str(path))}[/]"
        elif card.embedded:
            where = "[dim]missing from this installation[/]"
        else:
            where = "[dim]not installed: lia-upscale weights install " + escape(card.name) + "[/]"
        # the bare name is what resolves to this card (the latest version); others are pinned
        name = card.name if models.get_card(card.name) == card else card.pinned
        table.add_row(escape(name), f"{card.variant} x{card.scale} {card.purpose}",
                      f"{escape(card.description)}\n[dim]licence: {escape(card.licence)}[/]\n{where}")
    Console().print(table)


@main.group("weights")
def weights_group() -> None:
    """Manage weight files in your weights folder."""


@weights_group.command("install")
@click.argument("source")
def weights_install(source) -> None:
    """Install SOURCE (a file, a folder or an http(s) URL), checked against its card's sha256."""
    from .. import models

    console = make_console()
    try:
        paths = models.install(source)
    except LiaError as exc:
        fail_usage(str(exc))
    for p in paths:
        say(console, f"installed {p}")
