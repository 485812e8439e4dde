#!/usr/bin/env bash
# Checks deploy/prometheus/alerts.yml with Prometheus' own promtool:
#   1. `promtool check rules` (syntax, PromQL);
#   2. `promtool test rules alerts_test.yml` (the unit tests);
#   3. every rule is tested: each `alert:` is expected to fire in some alert_rule_test
#      (non-empty exp_alerts) and each `record:` is queried by some promql_expr_test.
# promtool comes from Debian's `prometheus` package, installed here if missing (as root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/deploy/prometheus"

if ! command -v promtool >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "check-alerts: installing promtool (Debian package prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; }
  fi
fi
command -v promtool >/dev/null 2>&1 || { echo "check-alerts: promtool missing (apt-get install prometheus)" >&2; exit 1; }

cd "$DIR"
promtool check rules alerts.yml
promtool test rules alerts_test.yml

# 3. Coverage, read line by line (the files are written in one style: see alerts_test.yml).
python3 - alerts.yml alerts_test.yml <<'PY'
import re, sys
rules = open(sys.argv[1]).read()
tests = open(sys.argv[2]).read().splitlines()
alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules, re.M)
records = re.findall(r"^\s*- record:\s*(\S+)", rules, re.M)
fired, quiet, queried = set(), set(), set()
for i, line in enumerate(tests):
    m = re.match(r"\s*alertname:\s*(\S+)", line)
    if m:
        nxt = tests[i + 1].strip() if i + 1 < len(tests) else ""
        (quiet if nxt == "exp_alerts: []" else fired).add(m.group(1))
    m = re.match(r"\s*- expr:\s*(\S+)\s*$", line)
    if m:
        queried.add(m.group(1))
problems = [f"alert {a} never expected to fire in alerts_test.yml" for a in alerts if a not in fired]
problems += [f"recording rule {r} never queried in alerts_test.yml" for r in records if r not in queried]
problems += [f"alerts_test.yml tests unknown alert {a}" for a in (fired | quiet) - set(alerts)]
for p in problems:
    print("check-alerts:", p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"check-alerts: {len(alerts)} alerts and {len(records)} recording rules, each tested")
PY
