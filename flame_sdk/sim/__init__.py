"""A simulator of the FLAME hub and node services, speaking the real node HTTP protocols.

Layers (enforced by import-linter, see pyproject.toml): ``run`` -> ``services`` -> ``data`` -> ``common``.
The SDK proper never imports this package.
"""
