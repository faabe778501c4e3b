"""Where the files that live beside the package are found.

The design card keeps `migrations/` and `ui/` at the top of the repository. In a checkout (and an
editable install) they are read from there; an installed wheel carries them as the packages
`llamaswap_es._migrations` and `llamaswap_es._ui` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_ROOT = _PACKAGE_DIR.parent


def resource_dir(name: str) -> Path:
    """Return the directory of a top-level resource folder (`migrations` or `ui`)."""
    in_checkout = _CHECKOUT_ROOT / name
    if in_checkout.is_dir():
        return in_checkout
    # The installed copies are folders without __init__.py (namespace packages, whose
    # importlib.resources path is a MultiplexedPath): they lie beside this module.
    return _PACKAGE_DIR / f"_{name}"


def package_file(*parts: str) -> Path:
    """A data file inside the package (e.g. `package_file("deploy", "llamaswap-es.service")`)."""
    return _PACKAGE_DIR.joinpath(*parts)
