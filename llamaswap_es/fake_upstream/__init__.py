"""A fake llama-server for tests and the demo: `python -m llamaswap_es.fake_upstream --port N`.

It answers llama-server's and OpenAI's/Anthropic's routes with deterministic text (cycling
words), real `usage` and llama-server `timings`, and can be told to load slowly, fail at start,
crash mid-stream, ignore SIGTERM or fork a child that shares its pipes — the situations the
executor and the proxy must handle (spec/api.md §23 describes llama-swap's own fakes).
"""
