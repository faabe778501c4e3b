"""A model's port chosen by `${PORT}` (from `startPort`), kept with the texts it went into.

llama-swap numbers `${PORT}` from `startPort` in model-id order when the config is loaded; if
another program already holds that port, every start of the model fails although the user never
asked for that port. Keeping the texts with `${PORT}` still in them lets the runtime put a free
port in their place when it starts the model (runtime/port_choice.py). A model whose port is
written out in its `cmd`/`proxy` has no `AutoPort`: its port is the user's choice and stays.
"""

from __future__ import annotations

from dataclasses import dataclass

PORT_SLUG = "${PORT}"


@dataclass(frozen=True, slots=True)
class AutoPort:
    port: int
    """The port `${PORT}` gave at load time (what the loaded config's texts contain)."""
    cmd: str
    proxy: str
    check_endpoint: str
    cmd_stop: str
    """`cmd`, `proxy`, `checkEndpoint` and `cmdStop` with `${PORT}` still in them."""

    def render(self, port: int) -> tuple[str, str, str, str]:
        """(cmd, proxy, checkEndpoint, cmdStop) for `port`."""
        text = str(port)
        return (
            self.cmd.replace(PORT_SLUG, text),
            self.proxy.replace(PORT_SLUG, text),
            self.check_endpoint.replace(PORT_SLUG, text),
            self.cmd_stop.replace(PORT_SLUG, text),
        )


def auto_port_of(body: dict[str, object], port: int) -> AutoPort | None:
    """The `AutoPort` of a model body taken just before `${PORT}` is substituted (None when a
    text is not a string: the typed decode reports that)."""
    cmd, proxy = body.get("cmd"), body.get("proxy")
    check, stop = body.get("checkEndpoint", "/health"), body.get("cmdStop", "")
    texts = (cmd, proxy, check, stop)
    if not all(isinstance(text, str) for text in texts):
        return None
    return AutoPort(port, *texts)  # type: ignore[arg-type]
