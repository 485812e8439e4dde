#!/usr/bin/env bash
# Bounded load benchmark of the gateway on loopback (127.0.0.1 only).
#
#   scripts/bench-load.sh
#   DURATION=30s CONNECTIONS=128 scripts/bench-load.sh
#
# What it does:
#   1. starts nginx (its own config, pid file and logs in a temp dir, 1 worker, foreground)
#      answering POST /v1/chat/completions with a fixed OpenAI chat.completion JSON: the
#      mock upstream, as close to free as an HTTP server gets;
#   2. starts the release gateway with a temp config whose fast and reasoning models are
#      OpenAI-compatible models on that nginx, and one tenant key;
#   3. runs wrk (POST, JSON body, Authorization header; scripts/bench/chat.lua) against
#      (a) nginx directly, (b) a second nginx as a plain reverse proxy to it (the reference
#      floor for one proxy hop) and (c) the gateway with `model: "auto"` (classifier
#      included), at CONNECTIONS (throughput) and at 1 connection (latency);
#   4. prints a table: req/s, p50/p90/p99, errors; added latency at c=1 (gateway minus
#      direct); the gateway's RSS (VmRSS / VmHWM) and CPU time per request.
# Everything it starts is stopped by PID on exit. Every wait is bounded.
#
# Environment (defaults):
#   DURATION=10s         each measured wrk run
#   WARMUP=2s            unmeasured wrk run before each target's first measurement
#   CONNECTIONS=64       connections of the throughput runs
#   THREADS=2            wrk threads of the throughput runs (c=1 runs use 1)
#   WRK_TIMEOUT=5s       wrk per-request timeout
#   PROMPT="What is the capital of France?"   the user message
#   MODEL=auto           model of the request ("fast": same path without the classifier)
#   CACHE=0              1: the bench tenant enables the response cache and requests carry
#                        `temperature: 0`, so after the first request every one is a cache hit
#   REDIS=0              1: start a redis-server (free port, no persistence) and give the gateway
#                        `[redis]`; the bench tenant gets a budget and rate limits far above the
#                        load, so every request reserves, takes and settles in Redis (the
#                        shared-state cost of the proxied path; with CACHE=1, hits stay local)
#   BIN=target/release/deliberate             gateway binary
#   BUILD=1              run `cargo build --release` first (a no-op when up to date)
#   JOBS=2               cargo -j
#   GATEWAY_LOG=info     DELIBERATE_LOG of the gateway (info or more: the "listening" lines are info;
#                        requests log at debug)
#   RESULTS=             also write the table to this file
#   KEEP_WORKDIR=0       1: keep the temp dir (configs, logs, raw wrk output)
#   NGINX_PROXY=1        also measure nginx as a plain reverse proxy to the same mock: the
#                        floor a proxy hop costs on this machine (0: skip)
#   PROXY_WORKERS=2      worker_processes of that reference proxy
#   LATENCY_PIN="same split"  CPU pinning of the 1-connection runs, one set per word:
#                        same (all on CPU 0), split (servers CPU 0, wrk CPU 1), none
#
# Note: on a small machine nginx, the gateway and wrk share the same cores, so every
# figure includes the load generator's own CPU use; the script prints the core count.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
WRK_TIMEOUT="${WRK_TIMEOUT:-5s}"
PROMPT="${PROMPT:-What is the capital of France?}"
MODEL="${MODEL:-auto}"
CACHE="${CACHE:-0}"
REDIS="${REDIS:-0}"
BIN="${BIN:-$ROOT/target/release/deliberate}"
BUILD="${BUILD:-1}"
JOBS="${JOBS:-2}"
GATEWAY_LOG="${GATEWAY_LOG:-info}"
RESULTS="${RESULTS:-}"
KEEP_WORKDIR="${KEEP_WORKDIR:-0}"
NGINX_PROXY="${NGINX_PROXY:-1}"
LATENCY_PIN="${LATENCY_PIN:-same split}"
PROXY_WORKERS="${PROXY_WORKERS:-2}"
KEY="sk-bench-$$-$RANDOM"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

seconds_of() { # 10s | 2m | 500ms | 10 -> whole seconds (at least 1)
  local v="$1"
  case "$v" in
    *ms) echo $(((${v%ms} + 999) / 1000)) ;;
    *s) echo "${v%s}" ;;
    *m) echo $((${v%m} * 60)) ;;
    *h) die "DURATION in hours is not a benchmark this script should run" ;;
    *) echo "$v" ;;
  esac
}
DURATION_S="$(seconds_of "$DURATION")"
WARMUP_S="$(seconds_of "$WARMUP")"
[[ "$DURATION_S" =~ ^[0-9]+$ && "$DURATION_S" -ge 1 && "$DURATION_S" -le 600 ]] ||
  die "DURATION must be between 1s and 10m (got $DURATION)"
[[ "$WARMUP_S" =~ ^[0-9]+$ && "$WARMUP_S" -le 60 ]] || die "WARMUP must be at most 60s"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1024 ]] ||
  die "CONNECTIONS must be 1..1024"

# ---- tools ------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing $*: install it (Debian: apt-get install $*)"
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    APT_UPDATED=1
  fi
  # policy-rc.d 101: the package must not start a system nginx on port 80.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 || {
    [[ $created -eq 1 ]] && rm -f "$policy"
    die "apt-get install $* failed"
  }
  [[ $created -eq 1 ]] && rm -f "$policy"
  return 0
}
NGINX="$(command -v nginx || true)"
[[ -n "$NGINX" ]] || [[ ! -x /usr/sbin/nginx ]] || NGINX=/usr/sbin/nginx
if [[ -z "$NGINX" ]]; then
  apt_install nginx-light || apt_install nginx
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
fi
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v curl >/dev/null 2>&1 || apt_install curl
[[ "$REDIS" != 1 ]] || command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v python3 >/dev/null 2>&1 || apt_install python3

if [[ "$BUILD" == 1 ]]; then
  log "cargo build --release (no-op when up to date)"
  cargo build --release -j"$JOBS" --bin deliberate >&2
fi
[[ -x "$BIN" ]] || die "no gateway binary at $BIN (run cargo build --release)"

# ---- processes we start, stopped by PID on exit -----------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/deliberate-bench.XXXXXX")"
NGINX_PID=""
PROXY_PID=""
GATEWAY_PID=""
REDIS_PID=""

stop_pid() { # stop_pid PID SIGNAL: signal, wait up to 10 s, then SIGKILL
  local pid="$1" sig="$2" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "PID $pid ignored SIG$sig for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_pid "$GATEWAY_PID" TERM
  stop_pid "$PROXY_PID" QUIT
  stop_pid "$NGINX_PID" QUIT
  stop_pid "$REDIS_PID" TERM
  if [[ "$KEEP_WORKDIR" == 1 || $rc -ne 0 ]]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # wait_http URL: up to 10 s for any HTTP answer
  local i
  for ((i = 0; i < 100; i++)); do
    if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# ---- nginx: the mock upstream, and the reverse-proxy reference --------------------------
# start_nginx NAME PORT WORKERS SERVER_BODY: writes $WORK/NAME/nginx.conf (own pid file, logs
# and temp dirs, foreground, `daemon off`), starts it in the background, echoes its PID.
start_nginx() {
  local name="$1" workers="$3" body="$4" dir="$WORK/$1" # $2: the port, already in $4
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# $name for scripts/bench-load.sh (generated).
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
$body
}
EOF
  chmod -R a+rwX "$dir/tmp"
  "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >&2 ||
    die "nginx rejected $dir/nginx.conf"
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
    </dev/null >"$dir/logs/stdout.log" 2>&1 &
  echo $!
}

UPSTREAM_PORT="$(free_port)"
# A complete chat.completion with usage, as an OpenAI-compatible upstream returns it.
COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-upstream","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":8,"total_tokens":22}}'
# A static file would answer POST with 405: `return` answers any method.
NGINX_PID="$(start_nginx mock "$UPSTREAM_PORT" 1 "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$COMPLETION';
        }
        location / {
            return 404;
        }
    }")"
UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
wait_http "$UPSTREAM/" || die "nginx did not start: $(cat "$WORK/mock/logs/error.log" 2>/dev/null)"
log "mock upstream: nginx (PID $NGINX_PID, 1 worker) on $UPSTREAM"

PROXY=""
if [[ "$NGINX_PROXY" == 1 ]]; then
  PROXY_PORT="$(free_port)"
  PROXY_PID="$(start_nginx proxy "$PROXY_PORT" "$PROXY_WORKERS" "
    upstream mock {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 128;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering on;
        }
    }")"
  PROXY="http://127.0.0.1:$PROXY_PORT"
  wait_http "$PROXY/" || die "nginx proxy did not start: $(cat "$WORK/proxy/logs/error.log" 2>/dev/null)"
  log "reference: nginx reverse proxy (PID $PROXY_PID, $PROXY_WORKERS workers) on $PROXY"
fi

# ---- the gateway ------------------------------------------------------------------------
mkdir -p "$WORK/gateway/policies"
cat >"$WORK/gateway/deliberate.toml" <<EOF
# Generated by scripts/bench-load.sh: both tiers served by the nginx mock.
[providers.mock]
kind = "openai"
base_url = "$UPSTREAM/v1"

[models.bench-fast]
provider = "mock"
tier = "fast"
upstream_model = "bench-upstream"
price = { input_per_1m = 0.15, output_per_1m = 0.6 }

[models.bench-reasoning]
provider = "mock"
tier = "reasoning"
upstream_model = "bench-upstream"
price = { input_per_1m = 1.1, output_per_1m = 4.4 }
capabilities = { max_tokens_param = "max_completion_tokens", system_role = "developer", reasoning_effort = true, unsupported_params = ["temperature", "top_p"], on_unsupported = "drop" }
EOF
KEY_SHA="$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)"
cat >"$WORK/gateway/policies/bench.toml" <<EOF
name = "bench"
api_keys = [{ sha256 = "$KEY_SHA" }]
fast_model = "bench-fast"
reasoning_model = "bench-reasoning"
EOF
if [[ "$CACHE" == 1 ]]; then
  printf '\n[cache]\nenabled = true\nttl_seconds = 3600\n' >>"$WORK/gateway/policies/bench.toml"
fi
if [[ "$REDIS" == 1 ]]; then
  REDIS_PORT="$(free_port)"
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK/redis" </dev/null >"$WORK/redis/stdout.log" 2>&1 &
  REDIS_PID=$!
  for ((i = 0; i < 100; i++)); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "redis-server did not start"
  log "redis-server (PID $REDIS_PID) on 127.0.0.1:$REDIS_PORT"
  printf '\n[redis]\nurl = "redis://127.0.0.1:%s"\n' "$REDIS_PORT" >>"$WORK/gateway/deliberate.toml"
  printf '\n[budget]\ndaily_usd = 1000000.0\n\n[rate_limits]\nrequests_per_minute = 1000000000\ntokens_per_minute = 4000000000\n' \
    >>"$WORK/gateway/policies/bench.toml"
fi

NO_COLOR=1 DELIBERATE_LOG="$GATEWAY_LOG" "$BIN" serve \
  --config "$WORK/gateway/deliberate.toml" --policies "$WORK/gateway/policies" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  </dev/null >"$WORK/gateway/stdout.log" 2>"$WORK/gateway/stderr.log" &
GATEWAY_PID=$!
API="" ADMIN=""
for ((i = 0; i < 200; i++)); do
  API="$(sed -n 's/\x1b\[[0-9;]*m//g; s/.*api listening on http:\/\/\([0-9.:]*\).*/\1/p' "$WORK/gateway/stderr.log" | head -1)"
  ADMIN="$(sed -n 's/\x1b\[[0-9;]*m//g; s/.*admin listening on http:\/\/\([0-9.:]*\).*/\1/p' "$WORK/gateway/stderr.log" | head -1)"
  [[ -n "$API" && -n "$ADMIN" ]] && break
  kill -0 "$GATEWAY_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$API" && -n "$ADMIN" ]] || die "gateway did not start: $(cat "$WORK/gateway/stderr.log")"
case "$API" in 127.0.0.1:*) ;; *) die "gateway API is not on 127.0.0.1: $API" ;; esac
GATEWAY="http://$API"
log "gateway (PID $GATEWAY_PID) on $GATEWAY, admin http://$ADMIN"

# ---- request body and sanity checks -----------------------------------------------------
BODY_FILE="$WORK/body.json"
MODEL="$MODEL" PROMPT="$PROMPT" CACHE="$CACHE" python3 -c '
import json, os
body = {"model": os.environ["MODEL"], "messages": [{"role": "user", "content": os.environ["PROMPT"]}]}
if os.environ["CACHE"] == "1":
    body["temperature"] = 0
print(json.dumps(body))
' >"$BODY_FILE"

check_once() { # check_once NAME URL: one request, must be 200 with a chat.completion
  local name="$1" url="$2" code
  code="$(curl -s -o "$WORK/check-$name.json" -D "$WORK/check-$name.headers" -w '%{http_code}' \
    --max-time 10 -H 'Content-Type: application/json' -H "Authorization: Bearer $KEY" \
    --data-binary "@$BODY_FILE" "$url/v1/chat/completions")" || true
  [[ "$code" == 200 ]] || die "$name: expected 200, got '$code': $(cat "$WORK/check-$name.json" 2>/dev/null)"
  grep -q '"chat.completion"' "$WORK/check-$name.json" || die "$name: not a chat.completion"
}
check_once direct "$UPSTREAM"
[[ -z "$PROXY" ]] || check_once proxy "$PROXY"
check_once gateway "$GATEWAY"
TIER="$(tr -d '\r' <"$WORK/check-gateway.headers" | sed -n 's/^x-deliberate-tier: //Ip' | head -1)"
REASON="$(tr -d '\r' <"$WORK/check-gateway.headers" | sed -n 's/^x-deliberate-reason: //Ip' | head -1)"
log "gateway routed the benchmark prompt to tier '$TIER' ($REASON)"

# ---- measurement ------------------------------------------------------------------------
rss_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK="$(getconf CLK_TCK)"

# run_wrk LABEL URL THREADS CONNS DURATION -> prints the BENCH line (also kept in $WORK)
run_wrk() {
  local label="$1" url="$2" threads="$3" conns="$4" dur="$5" limit out
  limit=$(($(seconds_of "$dur") + 30))
  out="$WORK/wrk-$label.txt"
  local pin=()
  [[ -z "$WRK_CPUS" ]] || pin=(taskset -c "$WRK_CPUS")
  BENCH_BODY_FILE="$BODY_FILE" BENCH_KEY="$KEY" timeout --kill-after=5 "$limit" \
    "${pin[@]}" wrk -t"$threads" -c"$conns" -d"$dur" --timeout "$WRK_TIMEOUT" --latency \
    -s "$ROOT/scripts/bench/chat.lua" "$url/v1/chat/completions" >"$out" 2>&1 ||
    die "wrk $label failed: $(cat "$out")"
  grep '^BENCH ' "$out" | tail -1
}

field() { # field "BENCH ..." NAME
  local kv
  for kv in $1; do
    [[ "$kv" == "$2="* ]] && { echo "${kv#*=}"; return 0; }
  done
  echo 0
}

declare -A ROW
measure() { # measure ID LABEL URL THREADS CONNS [gateway]
  local id="$1" label="$2" url="$3" threads="$4" conns="$5" gw="${6:-}"
  local t0=0 t1=0 line
  log "run: $label, $conns connection(s), $DURATION"
  [[ -n "$gw" ]] && t0="$(cpu_ticks "$GATEWAY_PID")"
  line="$(run_wrk "$id" "$url" "$threads" "$conns" "$DURATION")"
  [[ -n "$gw" ]] && t1="$(cpu_ticks "$GATEWAY_PID")"
  [[ -n "$line" ]] || die "no result from wrk ($id)"
  ROW[$id.label]="$label"
  ROW[$id.conns]="$conns"
  ROW[$id.line]="$line"
  ROW[$id.cpu_ticks]=$((t1 - t0))
}

WRK_CPUS=""
# pin_servers CPUS: every thread of the gateway, and of both nginx masters and their workers.
pin_servers() {
  local pid child
  for pid in "$GATEWAY_PID" "$NGINX_PID" "$PROXY_PID"; do
    [[ -n "$pid" ]] || continue
    for child in "$pid" $(pgrep -P "$pid" || true); do
      taskset -a -p -c "$1" "$child" >/dev/null || die "taskset $1 $child failed"
    done
  done
}

WARMED=""
warmup() { # warmup URL
  [[ "$WARMUP_S" -gt 0 ]] || return 0
  case " $WARMED " in *" $1 "*) return 0 ;; esac
  log "warm-up: $1, $WARMUP"
  run_wrk "warmup-$((${#WARMED} + 1))" "$1" "$THREADS" "$CONNECTIONS" "$WARMUP" >/dev/null
  WARMED="$WARMED $1"
}

RSS_IDLE_KB="$(rss_kb "$GATEWAY_PID" VmRSS)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
IDS=(direct_hi)
warmup "$UPSTREAM"
measure direct_hi "nginx direct" "$UPSTREAM" "$THREADS" "$CONNECTIONS"
if [[ -n "$PROXY" ]]; then
  warmup "$PROXY"
  measure proxy_hi "nginx proxy" "$PROXY" "$THREADS" "$CONNECTIONS"
  IDS+=(proxy_hi)
fi
warmup "$GATEWAY"
measure gw_hi "gateway ($MODEL)" "$GATEWAY" "$THREADS" "$CONNECTIONS" gw
IDS+=(gw_hi)
# Latency runs: a 1-connection ping-pong on a small shared VM is dominated by where the
# scheduler puts the processes (an idle vCPU's wake-up costs more than the work), so they
# run pinned: `same` = wrk and all servers on CPU 0 (hand-offs are context switches: shows
# the work each hop adds), `split` = servers on CPU 0, wrk on CPU 1 (every hop crosses
# cores and wakes one, as traffic from another host would), `none` = unpinned.
LAT_MODES=()
for mode in $LATENCY_PIN; do
  case "$mode" in
    same) pin_servers 0; WRK_CPUS=0 ;;
    split)
      if [[ $(nproc) -lt 2 ]]; then log "one CPU: skipping LATENCY_PIN=split"; continue; fi
      pin_servers 0; WRK_CPUS=1 ;;
    none) pin_servers "0-$(($(nproc) - 1))"; WRK_CPUS="" ;;
    *) die "LATENCY_PIN takes same, split and/or none (got '$mode')" ;;
  esac
  LAT_MODES+=("$mode")
  measure "direct_1_$mode" "nginx direct [$mode]" "$UPSTREAM" 1 1
  IDS+=("direct_1_$mode")
  if [[ -n "$PROXY" ]]; then
    measure "proxy_1_$mode" "nginx proxy [$mode]" "$PROXY" 1 1
    IDS+=("proxy_1_$mode")
  fi
  measure "gw_1_$mode" "gateway ($MODEL) [$mode]" "$GATEWAY" 1 1 gw
  IDS+=("gw_1_$mode")
done
RSS_KB="$(rss_kb "$GATEWAY_PID" VmRSS)"
HWM_KB="$(rss_kb "$GATEWAY_PID" VmHWM)"

curl -s --max-time 5 "http://$ADMIN/metrics" >"$WORK/metrics.txt" || true
GW_OK="$(awk '/^deliberate_requests_total\{/ && /outcome="ok"/ {s += $NF} END {printf "%d", s}' "$WORK/metrics.txt")"
GW_NOT_OK="$(awk '/^deliberate_requests_total\{/ && !/outcome="ok"/ {s += $NF} END {printf "%d", s}' "$WORK/metrics.txt")"
kill -0 "$GATEWAY_PID" 2>/dev/null || die "the gateway died under load: $(tail -20 "$WORK/gateway/stderr.log")"

[[ "$GW_NOT_OK" == 0 ]] || KEEP_WORKDIR=1
if [[ "$REDIS" == 1 ]]; then
  # Redis must really have been used: any fallback means a figure measured local state.
  REDIS_FALLBACKS="$(awk '/^deliberate_redis_fallbacks_total\{/ {s += $NF} END {printf "%d", s}' "$WORK/metrics.txt")"
  log "redis: deliberate_redis_up $(awk '/^deliberate_redis_up / {print $NF}' "$WORK/metrics.txt"), fallbacks $REDIS_FALLBACKS, $(redis-cli -p "$REDIS_PORT" dbsize) keys"
fi

# ---- report -----------------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN {printf "%.2f", us / 1000}'; }
ms_delta() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.2f", (a - b) / 1000}'; }
rps() { awk -v r="$(field "${ROW[$1.line]}" requests)" -v d="$(field "${ROW[$1.line]}" duration_us)" 'BEGIN {printf "%.0f", r / (d / 1e6)}'; }
pct() { awk -v a="$(rps "$1")" -v b="$(rps "$2")" 'BEGIN {printf "%.0f", 100 * a / b}'; }
report() {
  local id line errs
  printf 'deliberate load benchmark, %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'machine: %s cores, %s; load average before the runs: %s\n' \
    "$(nproc)" "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$LOAD_BEFORE"
  printf 'note: nginx, the gateway and wrk all share these %s cores: every figure includes the\n' "$(nproc)"
  printf '      load generator'"'"'s own CPU use, so absolute req/s are lower than on separate hosts.\n'
  printf 'mock upstream: nginx %s, 1 worker, fixed %d-byte chat.completion\n' \
    "$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')" "${#COMPLETION}"
  printf 'gateway: %s, model "%s" -> tier %s (%s)\n' "$BIN" "$MODEL" "$TIER" "$REASON"
  printf 'wrk: %s per run, throughput runs -t%s -c%s, latency runs -t1 -c1\n\n' "$DURATION" "$THREADS" "$CONNECTIONS"
  printf '| %-24s | %5s | %9s | %8s | %8s | %8s | %6s |\n' target conns 'req/s' 'p50 ms' 'p90 ms' 'p99 ms' errors
  printf '|--------------------------|------:|----------:|---------:|---------:|---------:|-------:|\n'
  for id in "${IDS[@]}"; do
    line="${ROW[$id.line]}"
    errs=$(($(field "$line" connect_errors) + $(field "$line" read_errors) + $(field "$line" write_errors) + $(field "$line" status_errors) + $(field "$line" timeouts)))
    printf '| %-24s | %5s | %9s | %8s | %8s | %8s | %6s |\n' "${ROW[$id.label]}" "${ROW[$id.conns]}" \
      "$(rps "$id")" \
      "$(ms "$(field "$line" p50_us)")" "$(ms "$(field "$line" p90_us)")" "$(ms "$(field "$line" p99_us)")" "$errs"
  done
  local mode d1 g1 p1 ghi="${ROW[gw_hi.line]}"
  printf '\nadded latency at c=1, minus nginx direct (pinning: same = one core, split = wrk on another core):\n'
  for mode in "${LAT_MODES[@]}"; do
    d1="${ROW[direct_1_$mode.line]}" g1="${ROW[gw_1_$mode.line]}"
    printf '  [%s] gateway      p50 %s ms, p99 %s ms\n' "$mode" \
      "$(ms_delta "$(field "$g1" p50_us)" "$(field "$d1" p50_us)")" \
      "$(ms_delta "$(field "$g1" p99_us)" "$(field "$d1" p99_us)")"
    if [[ -n "$PROXY" ]]; then
      p1="${ROW[proxy_1_$mode.line]}"
      printf '  [%s] nginx proxy  p50 %s ms, p99 %s ms\n' "$mode" \
        "$(ms_delta "$(field "$p1" p50_us)" "$(field "$d1" p50_us)")" \
        "$(ms_delta "$(field "$p1" p99_us)" "$(field "$d1" p99_us)")"
    fi
  done
  printf 'throughput at c=%s: gateway = %s%% of nginx direct' "$CONNECTIONS" "$(pct gw_hi direct_hi)"
  [[ -z "$PROXY" ]] || printf ', %s%% of nginx proxy' "$(pct gw_hi proxy_hi)"
  printf '\n'
  printf 'gateway CPU: %s ms per 1000 requests at c=%s (user+sys)\n' \
    "$(awk -v t="${ROW[gw_hi.cpu_ticks]}" -v hz="$CLK_TCK" -v r="$(field "$ghi" requests)" \
      'BEGIN {if (r > 0) printf "%.0f", 1e6 * t / hz / r; else print "n/a"}')" "$CONNECTIONS"
  printf 'gateway RSS: %.1f MB idle, %.1f MB after the load (peak VmHWM %.1f MB)\n' \
    "$(awk -v k="$RSS_IDLE_KB" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$RSS_KB" 'BEGIN {print k / 1024}')" "$(awk -v k="$HWM_KB" 'BEGIN {print k / 1024}')"
  printf 'gateway metrics: %s requests ok, %s not ok (deliberate_requests_total)\n' "$GW_OK" "$GW_NOT_OK"
  if [[ "$GW_NOT_OK" != 0 ]]; then
    printf 'WARNING: the gateway answered %s requests with an error: see %s\n' "$GW_NOT_OK" "$WORK"
  fi
}
report | tee "${RESULTS:-/dev/null}"
