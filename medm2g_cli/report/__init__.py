"""Previews, montages and run reports (PNG via Pillow; numpy only, no torch)."""
