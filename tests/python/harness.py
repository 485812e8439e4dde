"""Shared harness of the Python SDK tests: starts the real gateway binary on ephemeral
loopback ports (read back from its log) and stops it with SIGTERM (then SIGKILL).

The binary comes from `DELIBERATE_BIN`; otherwise the newest of `target/release/deliberate`
and `target/debug/deliberate` is used.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_KEY = "deliberate-demo"
STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 20.0

GREETING = "hi there!"
PROOF = "Prove that there are infinitely many prime numbers."

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
API_LINE = re.compile(r"api listening on http://([^\s\"]+)")
ADMIN_LINE = re.compile(r"admin listening on http://([^\s\"]+)")


def gateway_binary() -> Path:
    explicit = os.environ.get("DELIBERATE_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            path = REPO / path
        return path
    candidates = [REPO / "target" / p / "deliberate" for p in ("release", "debug")]
    existing = [c for c in candidates if c.is_file()]
    if not existing:
        pytest.fail(
            "no gateway binary: build it (`cargo build`) or set DELIBERATE_BIN", pytrace=False
        )
    # The newest one: a stale release build must not hide the code under test.
    return max(existing, key=lambda c: c.stat().st_mtime)


@dataclass
class Gateway:
    process: subprocess.Popen
    api: str
    admin: str
    log: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.api}/v1"

    def stop(self) -> int:
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
                pytest.fail(f"gateway did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM")
        return self.process.returncode


def start_gateway(*args: str) -> Gateway:
    """`deliberate serve ARGS` (default `--demo`) on ephemeral ports."""
    binary = gateway_binary()
    env = dict(os.environ, NO_COLOR="1", DELIBERATE_LOG=os.environ.get("DELIBERATE_LOG", "info"))
    process = subprocess.Popen(
        [
            str(binary),
            "serve",
            *(args or ("--demo",)),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def drain() -> None:
        # Keeps reading for the gateway's whole life so its stderr pipe never fills up.
        assert process.stderr is not None
        for raw in process.stderr:
            line = ANSI.sub("", raw.rstrip("\n"))
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, name="gateway-stderr", daemon=True).start()

    api = admin = None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while (api is None or admin is None) and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break  # the process closed stderr: it exited
        if m := API_LINE.search(line):
            api = m.group(1)
        elif m := ADMIN_LINE.search(line):
            admin = m.group(1)
    if api is None or admin is None:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        pytest.fail(
            f"{binary} did not report its addresses within {STARTUP_TIMEOUT_S}s "
            f"(exit code {process.returncode}); its log:\n" + "\n".join(log),
            pytrace=False,
        )
    return Gateway(process=process, api=api, admin=admin, log=log)


