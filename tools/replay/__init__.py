"""The replay and what-if tool's entry in a checkout (the design card's `tools/replay/`).

The code lives in the installed package, `llamaswap_es.replay`, because the server needs it too
(`/api/log/explain`); this folder is only the thin entry `python -m tools.replay ACTION …`, the
same as `llamaswap-es replay ACTION …`. Nothing under `tools/` is installed by the wheel.
"""
