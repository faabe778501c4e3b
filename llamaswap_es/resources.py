"""Where the files that live beside the package are found.

The design card keeps `migrations/` and `ui/` at the top of the repository. In a checkout (and an
editable install) they are read from there; an installed wheel carries them as the packages
`llamaswap_es._migrations` and `llamaswap_es._ui` (see pyproject.toml).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """Return the directory of a top-level resource folder (`migrations` or `ui`)."""
    in_checkout = _CHECKOUT_ROOT / name
    if in_checkout.is_dir():
        return in_checkout
    packaged = resources.files(f"llamaswap_es._{name}")
    return Path(str(packaged))
