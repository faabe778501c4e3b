"""The replay and what-if tool."""
