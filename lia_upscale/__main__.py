"""``python -m lia_upscale`` runs the command line."""

from .cli import main

main()
