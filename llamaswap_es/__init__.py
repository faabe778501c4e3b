"""llamaswap-es: an event-sourced, llama-swap-compatible model-swapping proxy."""

__version__ = "0.1.0"
