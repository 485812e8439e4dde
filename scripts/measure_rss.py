#!/usr/bin/env python3
"""Measures the resident memory (RSS) of a release `deliberate serve`, to size the pod's
memory request and limit (deploy/k8s/deployment.yaml; README, "Deployment").

    cargo build --release && scripts/measure_rss.py [--bin target/release/deliberate]

Everything runs on 127.0.0.1, bounded in count and time:
  1. a mock OpenAI-compatible upstream in this process: a completion of --answer-bytes of
     text, or (for `stream: true`) an SSE stream of 30 chunks, 100 ms apart;
  2. the gateway, with the default 64 MiB response cache on for its tenant (sampled
     requests cached too), so the cache can be filled;
  3. idle: RSS 3 s after start;
  4. cache fill: --fill distinct non-streaming requests (enough answers for 1.5 times the
     cache bound), --concurrency at a time; RSS after;
  5. streams: --streams concurrent streaming requests held open about 3 s each, on top of
     the full cache; peak RSS sampled every 50 ms, and the process's VmHWM.
Prints one table. Reads /proc/PID/status (Linux).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import re
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-measure-rss"
CACHE_BYTES = 64 * 2**20


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answer = "x"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for i in range(30):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1,
                         "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": f"part {i} " + "y" * 400},
                                      "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True
            return
        answer = json.dumps({
            "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": Upstream.answer}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 100, "total_tokens": 110},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    value = lambda name: int(re.search(rf"^{name}:\s+(\d+) kB", status, re.M).group(1)) / 1024
    return value("VmRSS"), value("VmHWM")


def start_gateway(binary: Path, upstream_port: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    (tmp / "policies").mkdir()
    (tmp / "deliberate.toml").write_text(f"""
[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"

[models.chat]
provider = "mock"
tier = "fast"

[models.think]
provider = "mock"
tier = "reasoning"
""")
    (tmp / "policies" / "load.toml").write_text(f"""
name = "load"
api_keys = [{{ sha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}" }}]
fast_model = "chat"
reasoning_model = "think"

[cache]
enabled = true
cache_nondeterministic = true
""")
    process = subprocess.Popen(
        [str(binary), "serve", "--config", str(tmp / "deliberate.toml"), "--policies",
         str(tmp / "policies"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={"DELIBERATE_LOG": "info", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        # Text or JSON log lines: the address is the host:port after the scheme either way.
        if m := re.search(r"api listening on http://([0-9.]+:[0-9]+)", line):
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, m.group(1)
    process.kill()
    raise SystemExit("the gateway did not start within 20 s")


def ask(api: str, prompt: str, stream: bool) -> int:
    host, port = api.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"model": "fast", "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]})
    connection.request("POST", "/v1/chat/completions", body,
                       {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    response = connection.getresponse()
    while response.read(65536):
        pass
    connection.close()
    return response.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "deliberate")
    parser.add_argument("--answer-bytes", type=int, default=16 * 1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--streams", type=int, default=256)
    args = parser.parse_args()
    fill = math.ceil(1.5 * CACHE_BYTES / args.answer_bytes)
    Upstream.answer = "x" * args.answer_bytes
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        process, api = start_gateway(args.bin, upstream.server_address[1], Path(tmp))
        try:
            rows = []
            time.sleep(3)
            rows.append(("idle, 3 s after start", *rss(process.pid)))

            started = time.monotonic()
            with ThreadPoolExecutor(args.concurrency) as pool:
                statuses = list(pool.map(lambda i: ask(api, f"fill {i}", False), range(fill)))
            bad = sum(s != 200 for s in statuses)
            rows.append((f"after {fill} distinct {args.answer_bytes // 1024} KiB answers "
                         f"(c={args.concurrency}, {time.monotonic() - started:.0f} s, "
                         f"{bad} not 200)", *rss(process.pid)))

            peak = [0.0]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    peak[0] = max(peak[0], rss(process.pid)[0])
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            with ThreadPoolExecutor(args.streams) as pool:
                statuses = list(pool.map(lambda i: ask(api, f"stream {i}", True),
                                         range(args.streams)))
            sampling.set()
            sampler.join()
            bad = sum(s != 200 for s in statuses)
            now, hwm = rss(process.pid)
            rows.append((f"{args.streams} concurrent 3 s streams on top ({bad} not 200); "
                         f"sampled peak {peak[0]:.1f} MiB", now, hwm))
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
    upstream.shutdown()
    print(f"{'phase':<88} {'VmRSS MiB':>9} {'VmHWM MiB':>9}")
    for phase, now, hwm in rows:
        print(f"{phase:<88} {now:>9.1f} {hwm:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
