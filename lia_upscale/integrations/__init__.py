"""Bridges to other tools' model loaders; each module imports its tool and registers with it.

Nothing in lia-upscale imports these modules: import the one you need, e.g.
``import lia_upscale.integrations.spandrel``.
"""
