"""CLI commands: one module per command, each exposing ``register(app)``. Thin: parse, call API, render."""
