#!/usr/bin/env bash
# The gateway's own instructions per request, counted by callgrind: repeatable whatever
# else the machine is doing (a wall-clock benchmark on this 2-core machine is not).
#
#   scripts/bench/callgrind.sh BIN [json|stream] [N]      (default: json 2000)
#
# Starts the shared bench's nginx+lua mock (../shared/bench/mock) and BIN under
# `valgrind --tool=callgrind`, configured like the shared bench's target (two openai-kind
# providers, one tenant, model `auto`); sends 200 warm-up requests, zeroes the counters,
# sends N requests at concurrency 8 with oha ($OHA, else `oha` on PATH), dumps, and prints
# the instructions per request. Everything is on 127.0.0.1, bounded in count and time; only
# the processes started here are stopped, by PID. The dump stays in $OUT_DIR (default
# target/callgrind) for `callgrind_annotate --inclusive=yes`.
#
# valgrind (3.19, Debian 12) stops at the first AVX-512 instruction ("Illegal instruction"),
# and `.cargo/config.toml` builds for the building CPU, which has AVX-512 here. Count a
# binary built for AVX2 instead (same code, other vector width):
#   RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=target/x86-64-v3 cargo build --release
#   scripts/bench/callgrind.sh target/x86-64-v3/release/deliberate json
set -euo pipefail
BIN=$(realpath "$1") MODE=${2:-json} N=${3:-2000}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
OHA=${OHA:-$(command -v oha || echo /tmp/bench/oha/bin/oha)}
OUT_DIR=${OUT_DIR:-$ROOT/target/callgrind}
command -v valgrind >/dev/null || { echo "callgrind.sh: apt-get install valgrind" >&2; exit 1; }
[[ -x "$OHA" ]] || { echo "callgrind.sh: oha not found (set OHA; ../shared/bench/setup.sh installs it)" >&2; exit 1; }
case "$MODE" in json | stream) ;; *) echo "callgrind.sh: mode is json or stream" >&2; exit 2 ;; esac
mkdir -p "$OUT_DIR"
D=$(mktemp -d)
MOCK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GW_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KEY=bench-key-deliberate
MOCK="" GW=""
cleanup() {
  [[ -n "$GW" ]] && kill "$GW" 2>/dev/null && wait "$GW" 2>/dev/null
  [[ -n "$MOCK" ]] && kill "$MOCK" 2>/dev/null && wait "$MOCK" 2>/dev/null
  rm -rf "$D"
}
trap cleanup EXIT
mkdir -p "$D/mock" "$D/policies"
sed -e "s#@RUN@#$D/mock#g" -e "s#@MOCKDIR@#$BENCH_DIR/mock#g" -e "s#@PORT@#$MOCK_PORT#g" \
  -e "s#@WORKERS@#1#g" "$BENCH_DIR/mock/nginx.conf.tmpl" >"$D/mock/nginx.conf"
/usr/sbin/nginx -p "$D/mock" -e "$D/mock/error.log" -c "$D/mock/nginx.conf" >/dev/null 2>&1 &
MOCK=$!
cat >"$D/deliberate.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
admin_listen = "127.0.0.1:0"
[providers.mockfast]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/d/0/v1"
[providers.mockslow]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/d/2000/v1"
[models.mock-fast]
provider = "mockfast"
tier = "fast"
[models.mock-slow]
provider = "mockslow"
tier = "reasoning"
TOML
cat >"$D/policies/bench.toml" <<TOML
name = "bench"
api_keys = [{ sha256 = "$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)" }]
fast_model = "mock-fast"
reasoning_model = "mock-slow"
TOML
extra=""
[[ "$MODE" == stream ]] && extra=',"stream":true'
printf '{"model":"auto","messages":[{"role":"system","content":"You are a concise assistant for a backend engineering team."},{"role":"user","content":"In two sentences, explain why HTTP connection pooling reduces latency for API gateways."}],"temperature":0.2,"max_tokens":128%s}' "$extra" >"$D/body.json"
OUT="$OUT_DIR/$(basename "$BIN").$MODE.callgrind"
rm -f "$OUT" "$OUT".*
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" serve \
  --config "$D/deliberate.toml" --policies "$D/policies" >"$D/gw.log" 2>&1 &
GW=$!
for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$GW_PORT/health" && break; sleep 0.2; done
load() {
  timeout 600 "$OHA" --no-tui -n "$1" -c 8 -m POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $KEY" -D "$D/body.json" "http://127.0.0.1:$GW_PORT/v1/chat/completions"
}
load 200 >/dev/null
callgrind_control -z "$GW" >/dev/null 2>&1
load "$N" | grep -E '^\s+\[[0-9]+\]' | sed 's/^ */responses: /'
callgrind_control -d "$GW" >/dev/null 2>&1
dump=$(ls -t "$OUT".* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "$(basename "$BIN") $MODE: $((total / N)) instructions per request ($N requests; dump $dump)"
