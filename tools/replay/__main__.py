"""`python -m tools.replay ACTION …` from a checkout: the same as `llamaswap-es replay ACTION …`."""

from __future__ import annotations

import sys

from llamaswap_es.cli import main

if __name__ == "__main__":
    sys.exit(main(["replay", *sys.argv[1:]]))
