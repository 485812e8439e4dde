#!/usr/bin/env bash
# Builds the release binary of deliberate at a past commit (default f5b44bc, before issue 12)
# into /tmp/bench/deliberate-before, for the `scripts/bench/deliberate-before.sh` bench target.
# Uses a throwaway git worktree; its own target dir, so the checkout's build is untouched.
set -euo pipefail
REV=${1:-f5b44bc}
OUT=${DELIBERATE_BEFORE_BIN:-/tmp/bench/deliberate-before}
ROOT=$(git rev-parse --show-toplevel)
WT=$(mktemp -d /tmp/deliberate-before.XXXXXX)
trap 'git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true' EXIT
git -C "$ROOT" worktree add --detach "$WT" "$REV" >/dev/null
(cd "$WT" && cargo build --release -j2 --locked)
mkdir -p "$(dirname "$OUT")"
cp "$WT/target/release/deliberate" "$OUT"
echo "$OUT ($REV)"
