# Bench target (for ../shared/bench/run.sh): deliberate as it was before the request-path
# restructuring of issue 12 (commit f5b44bc), so one run measures before and after side by side.
# Build that binary once with scripts/bench/build-before.sh.
DELIBERATE_BIN=${DELIBERATE_BEFORE_BIN:-/tmp/bench/deliberate-before}
# shellcheck disable=SC1091
. "$BENCH_DIR/targets/deliberate.sh"
