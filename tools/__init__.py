"""Developer entries that run from a checkout only (never installed: see pyproject.toml)."""
