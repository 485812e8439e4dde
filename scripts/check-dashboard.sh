#!/usr/bin/env bash
# Checks deploy/grafana/deliberate.json against a real Prometheus scraping a real gateway
# under a short load (scripts/check_dashboard.py: every panel query and variable returns
# data, every alert rule evaluates, promtool check metrics is clean). Loopback only, its
# own temp dir, bounded in time.
#   scripts/check-dashboard.sh [BIN]   (default: target/debug/deliberate)
# Prometheus and promtool come from Debian's `prometheus` package, installed if missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-${DELIBERATE_BIN:-$ROOT/target/debug/deliberate}}"
[[ -x "$BIN" ]] || { echo "check-dashboard: no gateway binary at $BIN (cargo build)" >&2; exit 1; }

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "check-dashboard: installing Debian package prometheus"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; }
  fi
fi

exec timeout --kill-after=20 300 python3 "$ROOT/scripts/check_dashboard.py" "$BIN"
