"""Developer tooling, not needed to upscale: benchmarks, training, evaluation, metrics, bicubic.

Nothing in the core (nn, models, engine, images, api, batch) imports this folder; the CLI's
``bench``, ``train`` and ``eval`` commands do.
"""
