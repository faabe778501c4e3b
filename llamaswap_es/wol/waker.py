"""Wake-ups: one magic packet per cause, each cause logged, a burst of causes sent once.

Whoever asks for a wake-up says why (the request that found the server asleep, or the failure
that showed it had gone), so the log answers "what woke my GPU server at 3 a.m.?". Requests that
arrive together (a browser loading a page, a client retrying) send one packet, not one each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from llamaswap_es.wol.magic_packet import format_mac, magic_packet, send_packet

log = logging.getLogger("llamaswap_es.wol")

RESEND_AFTER_S = 2.0
"""A wake-up asked for sooner than this after a packet went out is logged but not sent again."""


@dataclass
class WakeCounts:
    """What `/status` reports about wake-ups since the proxy started."""

    sent: int = 0
    coalesced: int = 0
    send_errors: int = 0
    last_cause: str = ""
    last_error: str = ""


class Waker:
    """Sends the magic packet for `mac` to `address` when asked, with the reason."""

    def __init__(
        self,
        mac: bytes,
        address: tuple[str, int],
        *,
        resend_after_s: float = RESEND_AFTER_S,
        monotonic: Callable[[], float] = time.monotonic,
        send: Callable[[bytes, tuple[str, int]], None] = send_packet,
    ) -> None:
        self._packet = magic_packet(mac)
        self._mac = format_mac(mac)
        self._address = address
        self._resend_after_s = resend_after_s
        self._monotonic = monotonic
        self._send = send
        self._sent_at: float | None = None
        self.counts = WakeCounts()

    @property
    def target(self) -> str:
        """`aa:bb:… via host:port`, for log lines and error messages."""
        return f"{self._mac} via {self._address[0]}:{self._address[1]}"

    def wake(self, cause: str) -> bool:
        """Send the packet (True), or say why not (False): one went out just now, or sending
        failed (counted; the error is kept for the answer the held request will get)."""
        self.counts.last_cause = cause
        now = self._monotonic()
        if self._sent_at is not None and now - self._sent_at < self._resend_after_s:
            self.counts.coalesced += 1
            log.info(
                "wake-up already sent %.1fs ago target=%s cause=%s",
                now - self._sent_at, self.target, cause,
            )  # fmt: skip
            return False
        try:
            self._send(self._packet, self._address)
        except OSError as exc:
            self.counts.send_errors += 1
            self.counts.last_error = f"sending the magic packet to {self.target} failed: {exc}"
            log.warning("wake-up failed target=%s cause=%s error=%s", self.target, cause, exc)
            return False
        self._sent_at = now
        self.counts.sent += 1
        log.info("wake-up sent target=%s cause=%s", self.target, cause)
        return True
