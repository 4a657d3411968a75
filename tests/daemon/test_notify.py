from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gicls.daemon.notify import Notifier


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize("abstract", [True, False])
def test_messages_arrive_on_path_and_abstract_sockets(tmp_path: Path, abstract: bool) -> None:
    name = f"gicls-{uuid.uuid4().hex}"
    address = f"@{name}" if abstract else str(tmp_path / "notify")
    with _bound("\0" + name if abstract else address) as receiver:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
        notifier.ready("watching")
        notifier.watchdog()
        notifier.stopping()
        received = [receiver.recv(4096).decode() for _ in range(3)]
    assert received == ["READY=1\nSTATUS=watching", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_our_pid() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000"}
    assert Notifier.from_env(env).watchdog_interval == 2.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 2.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "@x"}).watchdog_interval is None


def test_without_a_socket_nothing_is_sent_and_a_dead_one_is_logged_once(tmp_path: Path) -> None:
    with capture_logs() as logs:
        Notifier.from_env({}).ready("x")  # not under systemd: silently nothing
        dead = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
        for _ in range(5):
            dead.watchdog()
    assert [entry["event"] for entry in logs] == ["notify_failed"]
    assert "No such file" in logs[0]["error"]


def test_a_receiver_that_stopped_reading_never_blocks_the_sender(tmp_path: Path) -> None:
    queue_limit = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    address = str(tmp_path / "notify")
    with _bound(address) as receiver, capture_logs() as logs:
        notifier = Notifier(address)
        started = time.monotonic()
        for _ in range(queue_limit + 200):  # the queue fills up: EAGAIN, not a wait
            notifier.watchdog()
        elapsed = time.monotonic() - started
        assert receiver.recv(4096) == b"WATCHDOG=1"
        notifier.watchdog()  # room again: sent, and the outage is over
    assert elapsed < 5
    assert [entry["event"] for entry in logs] == ["notify_failed"]
