"""The replay and what-if tool: `llamaswap-es replay …` (docs/replay.md); `tools/replay/` in a
checkout is its thin entry (`python -m tools.replay …`)."""
