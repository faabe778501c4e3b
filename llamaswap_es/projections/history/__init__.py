"""The history sink: each node's requests and decisions in one (shared) SQL database."""
