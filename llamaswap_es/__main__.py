"""`python -m llamaswap_es` is the `llamaswap-es` command."""

from llamaswap_es.cli import main

raise SystemExit(main())
