#!/usr/bin/env python3
"""Opens N concurrent streaming completions through a release `deliberate serve` and reports
the gateway's resident memory while they are all open (issue 12: <= 50 MB for 1,000 streams).

    cargo build --release -j2 && scripts/open_streams.py [--streams 1000] [--bin PATH]

Everything is on 127.0.0.1 and bounded: an asyncio mock OpenAI-compatible upstream that
answers every stream with one chunk per --interval-ms for --hold-s seconds and then [DONE];
the gateway configured like the side-by-side bench target (one openai-kind provider, one
tenant, defaults otherwise); N raw HTTP/1.1 clients that each read their stream to the end.
RSS is sampled from /proc every 50 ms; the table shows idle, the peak over the run (the
opening burst included: N requests parsed, classified and sent at once), the median while
all N streams were open at the upstream, and after they closed. Standard library only.
Exit 1 if a stream failed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-open-streams"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """A streaming mock: every request gets a slow SSE answer of small content chunks."""

    def __init__(self, interval_s: float, hold_s: float) -> None:
        self.interval_s, self.hold_s = interval_s, hold_s
        self.open_now = 0
        self.open_peak = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await asyncio.wait_for(reader.readexactly(length), 30))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"connection: close\r\n\r\n")
            self.open_now += 1
            self.open_peak = max(self.open_peak, self.open_now)
            deadline = time.monotonic() + self.hold_s
            i = 0
            while time.monotonic() < deadline:
                chunk = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
                         "model": body.get("model", "m"),
                         "choices": [{"index": 0, "delta": {"content": f"token{i} "},
                                      "finish_reason": None}]}
                writer.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await writer.drain()
                i += 1
                await asyncio.sleep(self.interval_s)
            writer.write(b'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,'
                         b'"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
                         b"\n\ndata: [DONE]\n\n")
            await writer.drain()
            self.open_now -= 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            pass
        finally:
            writer.close()


async def one_stream(port: int, first_bytes: asyncio.Queue, timeout_s: float) -> bool:
    body = json.dumps({"model": "auto", "stream": True,
                       "messages": [{"role": "user", "content": "Tell me a short story."}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
               f"authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status = await reader.readline()
            first = True
            seen = b""
            while chunk := await reader.read(65536):
                if first:
                    first_bytes.put_nowait(None)
                    first = False
                seen = (seen + chunk)[-64:]
            writer.close()
            return status.startswith(b"HTTP/1.1 200") and b"[DONE]" in seen
    except (OSError, TimeoutError):
        return False


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--bin", default=str(ROOT / "target/release/deliberate"))
    ap.add_argument("--interval-ms", type=int, default=500)
    ap.add_argument("--hold-s", type=float, default=8.0)
    args = ap.parse_args()
    if not 1 <= args.streams <= 5000:
        raise SystemExit("--streams must be 1..5000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.streams + 256)), hard))

    upstream = Upstream(args.interval_ms / 1000, args.hold_s)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, backlog=4096)
    up_port = server.sockets[0].getsockname()[1]
    gw_port = free_port()
    work = Path(tempfile.mkdtemp(prefix="open-streams-"))
    (work / "policies").mkdir()
    (work / "deliberate.toml").write_text(f"""
[server]
listen = "127.0.0.1:{gw_port}"
admin_listen = "127.0.0.1:0"
[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:{up_port}/v1"
[models.mock-fast]
provider = "mock"
tier = "fast"
[models.mock-slow]
provider = "mock"
tier = "reasoning"
""")
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    (work / "policies/bench.toml").write_text(
        f'name = "bench"\napi_keys = [{{ sha256 = "{digest}" }}]\n'
        'fast_model = "mock-fast"\nreasoning_model = "mock-slow"\n')
    gw = subprocess.Popen([args.bin, "serve", "--config", str(work / "deliberate.toml"),
                           "--policies", str(work / "policies")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", gw_port), 0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        idle = rss_kb(gw.pid)
        first_bytes: asyncio.Queue = asyncio.Queue()
        timeout_s = args.hold_s + 60
        tasks = [asyncio.create_task(one_stream(gw_port, first_bytes, timeout_s))
                 for _ in range(args.streams)]
        peak = idle
        all_open_at = None
        # Sampled only while every stream is open at the upstream: the steady cost of N open
        # streams, apart from the opening burst (N requests parsed, classified and sent at
        # once), which is what the peak also holds.
        while_open: list[int] = []
        started = time.monotonic()
        while not all(t.done() for t in tasks):
            rss = rss_kb(gw.pid)
            peak = max(peak, rss)
            if upstream.open_now >= args.streams:
                while_open.append(rss)
            if all_open_at is None and first_bytes.qsize() >= args.streams:
                all_open_at = time.monotonic() - started
            await asyncio.sleep(0.05)
        ok = sum(t.result() for t in tasks)
        await asyncio.sleep(1.0)
        after = rss_kb(gw.pid)
    finally:
        gw.terminate()
        gw.wait(timeout=35)
        server.close()
    opened = f"{all_open_at:.1f} s" if all_open_at is not None else "never all at once"
    steady = f"{statistics.median(while_open) / 1024:.1f} MB" if while_open else "–"
    print("| streams | upstream peak open | all open after | RSS idle | RSS peak "
          "| RSS all open (median) | RSS after | ok |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.streams} | {upstream.open_peak} | {opened} | {idle / 1024:.1f} MB "
          f"| {peak / 1024:.1f} MB | {steady} | {after / 1024:.1f} MB | {ok}/{args.streams} |")
    return 0 if ok == args.streams else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
