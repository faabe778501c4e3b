"""Entry point: `python -m llamaswap_es.fake_upstream --help`."""

from llamaswap_es.fake_upstream.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
