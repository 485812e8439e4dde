#!/usr/bin/env python3
"""Runs every query of deploy/grafana/deliberate.json against a real Prometheus.

Starts, on loopback and in a temp dir of its own: the gateway (simulated models, two
tenants: one with budget, rate limits and cache; one whose fast model's provider refuses
connections, so its requests fall back and a breaker opens), and Prometheus scraping the
gateway's /metrics every second with deploy/prometheus/alerts.yml loaded. Sends a short
bounded load (non-streaming and streaming, both tiers, cache hits, fallbacks, wrong keys),
then checks:
  - every panel target and every template variable of the dashboard parses and returns data
    (a finite value) through Prometheus' HTTP API;
  - every alerting and recording rule evaluates without error on the live data, and the
    error-ratio alerts are not even pending although 1 request in 7 is a 401;
  - `promtool check metrics` is clean on the gateway's exposition.
Everything it started is stopped by pid at the end. Standard library only.

usage: check_dashboard.py BIN   (prometheus and promtool on PATH)
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "deliberate.json")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
KEY_A, KEY_B = "dash-key-team-a", "dash-key-team-b"
LOAD_SECONDS = 15
DEADLINE = time.monotonic() + 240  # the whole check


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what, check, seconds):
    end = min(time.monotonic() + seconds, DEADLINE)
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"check-dashboard: {what} not ready in time")


def write_config(tmp, api, admin, dead):
    policies = os.path.join(tmp, "policies")
    os.makedirs(policies)
    config = os.path.join(tmp, "deliberate.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{api}"
admin_listen = "127.0.0.1:{admin}"
max_in_flight_requests = 512

[resilience]
breaker_failures = 3
breaker_open_ms = 600000

[providers.sim]
kind = "simulated"
time_to_first_token_ms = 30
tokens_per_second = 2000

# Nothing listens there: every call fails to connect.
[providers.down]
kind = "openai"
base_url = "http://127.0.0.1:{dead}/v1"

[models.sim-fast]
provider = "sim"
tier = "fast"
price = {{ input_per_1m = 0.15, output_per_1m = 0.60 }}

[models.sim-think]
provider = "sim"
tier = "reasoning"
price = {{ input_per_1m = 1.10, output_per_1m = 4.40 }}

[models.flaky-fast]
provider = "down"
tier = "fast"
price = {{ input_per_1m = 0.15, output_per_1m = 0.60 }}
""")
    with open(os.path.join(policies, "team-a.toml"), "w") as f:
        f.write("""
name = "team-a"
api_keys = [{ env = "DASH_KEY_A" }]
fast_model = "sim-fast"
reasoning_model = "sim-think"
[budget]
daily_usd = 5.0
monthly_usd = 100.0
[rate_limits]
requests_per_minute = 100000
[cache]
enabled = true
""")
    with open(os.path.join(policies, "team-b.toml"), "w") as f:
        f.write("""
name = "team-b"
api_keys = [{ env = "DASH_KEY_B" }]
fast_model = "flaky-fast"
reasoning_model = "sim-think"
allowed_models = ["sim-fast"]
[fallbacks]
fast = ["sim-fast"]
""")
    return config, policies


def load(api):
    """A short bounded mix of requests from 4 threads."""
    url = f"http://127.0.0.1:{api}/v1/chat/completions"
    auth = lambda key: {"authorization": f"Bearer {key}"}
    prompts = [
        "hi there",
        "Prove that there are infinitely many primes, step by step, then analyse the complexity of the sieve of Eratosthenes.",
    ]
    counts = {}
    lock = threading.Lock()

    def one(i):
        kind = i % 7
        if kind == 0:
            key, body = KEY_A, {"model": "auto", "messages": [{"role": "user", "content": prompts[i % 2]}]}
        elif kind == 1:
            key, body = KEY_A, {"model": "auto", "stream": True, "stream_options": {"include_usage": True},
                                "messages": [{"role": "user", "content": prompts[(i // 7) % 2]}]}
        elif kind == 2:
            key, body = KEY_A, {"model": "reasoning", "stream": True,
                                "messages": [{"role": "user", "content": "think"}]}
        elif kind == 3:  # the same deterministic request: cache hits after the first
            key, body = KEY_A, {"model": "fast", "temperature": 0,
                                "messages": [{"role": "user", "content": "cached question"}]}
        elif kind == 4:  # team-b's fast model is down: fallback to sim-fast
            key, body = KEY_B, {"model": "fast", "messages": [{"role": "user", "content": "hello"}]}
        elif kind == 5:
            key, body = KEY_B, {"model": "fast", "stream": True,
                                "messages": [{"role": "user", "content": "hello"}]}
        else:
            key, body = "wrong-key", {"model": "fast", "messages": [{"role": "user", "content": "x"}]}
        status, _ = http("POST", url, body, auth(key), timeout=30)
        with lock:
            counts[status] = counts.get(status, 0) + 1

    end = min(time.monotonic() + LOAD_SECONDS, DEADLINE)
    def worker(w):
        i = w
        while time.monotonic() < end and i < 2000:
            one(i)
            i += 4
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def substitute(expr):
    for var, value in (("$__rate_interval", "1m"), ("$__range", "5m"), ("$__interval", "15s")):
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?(tenant|tier|model)\}?", ".*", expr)


def finite(result):
    return any(not math.isnan(float(s["value"][1])) and not math.isinf(float(s["value"][1]))
               for s in result)


def query(prom, expr):
    status, body = http("GET", f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        return f"error: {data.get('error', status)}"
    result = data["data"]["result"]
    if not result:
        return "no data"
    if not finite(result):
        return f"only NaN/Inf: {result[:2]}"
    if os.environ.get("VERBOSE"):
        for sample in result[:4]:
            print(f"    {sample['metric']} = {sample['value'][1]}")
    return None


def all_panels(items):
    for p in items:
        yield p
        yield from all_panels(p.get("panels", []))


def check_shape(dashboard):
    """The parts of Grafana's JSON model the queries rely on: a Prometheus data source
    variable every panel uses, the tenant/tier/model variables, unique panel ids."""
    problems = []
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no Prometheus datasource variable")
    for name in ("tenant", "tier", "model"):
        if variables.get(name, {}).get("type") != "query":
            problems.append(f"no {name} variable")
    ids = [p["id"] for p in all_panels(dashboard["panels"])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    for p in all_panels(dashboard["panels"]):
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}" or not p.get("targets"):
            problems.append(f"panel {p['title']!r}: no targets on the datasource variable")
    return problems


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    # `timeout` sends SIGTERM: stop what was started (the finally below) before exiting.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            raise SystemExit(f"check-dashboard: {tool} not on PATH (apt-get install prometheus)")
    dashboard = json.load(open(DASHBOARD))
    shape = check_shape(dashboard)
    if shape:
        raise SystemExit("check-dashboard: " + "; ".join(shape))
    tmp = tempfile.mkdtemp(prefix="deliberate-dashboard-")
    procs = []
    try:
        api, admin, dead, prom_port = free_port(), free_port(), free_port(), free_port()
        config, policies = write_config(tmp, api, admin, dead)
        env = dict(os.environ, DASH_KEY_A=KEY_A, DASH_KEY_B=KEY_B, DELIBERATE_LOG="warn")
        gw_log = open(os.path.join(tmp, "gateway.log"), "w")
        procs.append(subprocess.Popen([binary, "serve", "--config", config, "--policies", policies],
                                      env=env, stdout=gw_log, stderr=subprocess.STDOUT))
        wait_until("gateway", lambda: http("GET", f"http://127.0.0.1:{admin}/readyz")[0] == 200, 60)

        shutil.copy(ALERTS, os.path.join(tmp, "alerts.yml"))
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: deliberate
    static_configs:
      - targets: ["127.0.0.1:{admin}"]
""")
        prom = f"http://127.0.0.1:{prom_port}"
        prom_log = open(os.path.join(tmp, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h"],
            stdout=prom_log, stderr=subprocess.STDOUT, cwd=tmp))
        wait_until("prometheus", lambda: http("GET", f"{prom}/-/ready")[0] == 200, 60)
        wait_until("first scrape", lambda: query(prom, 'up{job="deliberate"} == 1') is None, 30)

        counts = load(api)
        print(f"check-dashboard: load done, responses by status: {dict(sorted(counts.items()))}")
        if counts.get(200, 0) < 20:
            raise SystemExit("check-dashboard: too few answers under load; see " + tmp)
        time.sleep(4)  # a few more scrapes and rule evaluations

        problems = []
        checked = 0
        for var in dashboard["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["definition"])
            if not m:
                problems.append(f"variable {var['name']}: not label_values(...): {var['definition']}")
                continue
            selector, label = substitute(m.group(1)), m.group(2)
            status, body = http("GET", f"{prom}/api/v1/label/{label}/values?"
                                + urllib.parse.urlencode({"match[]": selector}))
            values = json.loads(body).get("data") or []
            checked += 1
            if status != 200 or not values:
                problems.append(f"variable {var['name']}: {status} {body[:200]!r}")
        for panel in all_panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                checked += 1
                if os.environ.get("VERBOSE"):
                    print(f"  {panel['title']} {target['refId']}")
                why = query(prom, substitute(target["expr"]))
                if why:
                    problems.append(f"panel {panel['title']!r} {target['refId']}: {why}\n    {target['expr']}")

        status, body = http("GET", f"{prom}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if not rules:
            problems.append("alerts.yml: no rules loaded")
        for r in rules:
            checked += 1
            if r.get("health") != "ok":
                problems.append(f"rule {r['name']}: health {r.get('health')}: {r.get('lastError')}")

        # The load's wrong keys (1 request in 7) are the clients' errors: the error-ratio
        # alerts must not even be pending (their expression false), on real data.
        checked += 1
        status, body = http("GET", f"{prom}/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'ALERTS{alertname=~"DeliberateErrorRatio.*"}'}))
        pending = json.loads(body)["data"]["result"]
        if status != 200 or pending:
            problems.append(f"error-ratio alerts pending on a load of 200s and 401s: {pending}")

        _, exposition = http("GET", f"http://127.0.0.1:{admin}/metrics")
        lint = subprocess.run(["promtool", "check", "metrics"], input=exposition,
                              capture_output=True, timeout=30)
        checked += 1
        if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
            problems.append("promtool check metrics: " + (lint.stdout + lint.stderr).decode())

        for p in problems:
            print("check-dashboard: FAIL", p)
        print(f"check-dashboard: {checked - len(problems)} passed, {len(problems)} failed")
        return 1 if problems else 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if os.environ.get("KEEP_TMP"):
            print("check-dashboard: kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
