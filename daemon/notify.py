"""sd_notify: tell systemd (Type=notify) how the daemon is doing, over $NOTIFY_SOCKET.

A datagram per message to the AF_UNIX socket systemd names; a leading '@' means the abstract
namespace. Without NOTIFY_SOCKET (not under systemd) every call is a no-op. WATCHDOG_USEC asks
for a WATCHDOG=1 ping at least that often; we ping at half the interval, as sd_watchdog_enabled
recommends, and only for our own pid when WATCHDOG_PID is set. A failing socket is logged
once per outage, not once per ping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from gicls.logs import get_logger

log = get_logger(__name__)


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_interval = watchdog_usec / 2_000_000 if watchdog_usec else None
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        wants_pings = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        return cls(environ.get("NOTIFY_SOCKET") or None, int(usec) if wants_pings else None)

    def send(self, *assignments: str) -> None:
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                # Never block: a receiver that stopped reading must not stall classification.
                sock.sendto("\n".join(assignments).encode(), socket.MSG_DONTWAIT, self._address)
            except OSError as exc:
                # systemd gone or the socket unreachable: not a reason to stop classifying.
                if not self._failing:
                    log.warning("notify_failed", error=str(exc))
                self._failing = True
                return
        self._failing = False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_start(self, seconds: float) -> None:
        """Before READY: ask for ``seconds`` more than TimeoutStartSec (systemd >= 236)."""
        self.send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")
