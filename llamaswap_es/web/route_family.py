"""Which family a path belongs to, and so which browser policy it answers with (docs/api.md,
"Who may call what"). The whole policy, in one place:

* **inference**: `/v1/*`, `/v/*`, `/upstream/*`, `/comfyui*`, `/sdapi/*`, `/audioapi/*`, the other
  model routes (`/rerank`, `/infill`, `/completion`, `/props`, …) and `/models`.
  No Host check; llama-swap's CORS (any origin's preflight is answered with `*`); cross-site
  writes allowed. Browser chat clients on other origins call these (with an API key where keys
  are configured); a page may use them cross-origin anyway, so a Host check would only break
  clients that reach us by a container or service name.
* **public**: `/health`, `/wol-health`, `/`, `/upstream`, `/favicon.ico`. Read-only; no Host
  check (health probes come under any name); llama-swap's CORS.
* **admin**: everything else, `/api/*`, `/logs*`, `/running`, `/unload`, `/metrics`, `/ui/*`
  and unknown paths (the strict policy is the default). Host checked (`web/host_check.py`);
  cross-origin only for the origins in `allowedOrigins`, preflights included; a cross-site
  request that changes state is refused (`web/cors.py`). This is what a web page must not
  drive: it unloads models, reloads the config, reads history, logs and captures.
"""

from __future__ import annotations

import enum

from llamaswap_es.web.model_routes import MODEL_DISPATCHED


class RouteFamily(enum.Enum):
    INFERENCE = "inference"
    PUBLIC = "public"
    ADMIN = "admin"


INFERENCE_PREFIXES = ("/v1/", "/v/", "/upstream/", "/comfyui/", "/sdapi/", "/audioapi/")
INFERENCE_PATHS = MODEL_DISPATCHED | {"/models", "/comfyui"}
PUBLIC_PATHS = frozenset({"/health", "/wol-health", "/", "/upstream", "/favicon.ico"})

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_CHANGING_GETS = frozenset({"/unload"})
"""llama-swap's legacy unload-all is a GET: an `<img src>` on any page could fire it."""


def family_of(path: str) -> RouteFamily:
    if path in INFERENCE_PATHS or path.startswith(INFERENCE_PREFIXES):
        return RouteFamily.INFERENCE
    if path in PUBLIC_PATHS:
        return RouteFamily.PUBLIC
    return RouteFamily.ADMIN


def changes_state(method: str, path: str) -> bool:
    """True for a request that does something (unload, reload, cancel, switch a profile)."""
    return method.upper() not in SAFE_METHODS or path in STATE_CHANGING_GETS
