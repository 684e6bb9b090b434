"""The web archive's presentation: pages, bodies, feeds and forms (no HTTP here; see runners/web.py)."""
