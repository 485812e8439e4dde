#!/usr/bin/env bash
# The second stage's evaluation (EVAL.md, "Second stage"), from a checkout:
#
#   scripts/classifier/second_stage.sh [WORK_DIR] [BAND ...]     # BAND: lower:upper
#
# 1. fetches the encoder (scripts/fetch-encoder.sh, e5 by default);
# 2. embeds the training data and the held-out files with the gateway's own encoder
#    (`classify embed`, the window the gateway uses); two processes, one per core;
# 3. writes the out-of-fold first-stage score of every training example (`classify train
#    --oof-out`, the shipped model's settings; the model it writes goes to WORK_DIR, not
#    models/);
# 4. trains a head per band and scores it on data/heldout (second_stage.py).
# Embeddings already in WORK_DIR are reused. About 15 minutes on 2 idle cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$root/target/second-stage}"
shift || true
bin="${DELIBERATE_BIN:-$root/target/release/deliberate}"
mkdir -p "$work"
cd "$root"
[[ -x "$bin" ]] || cargo build --release -j2
scripts/fetch-encoder.sh e5

embed() { # OUT FILES...
  local out="$1"
  shift
  if [[ ! -s "$out" ]]; then
    "$bin" classify embed --data "$@" --out "$out.part"
    mv "$out.part" "$out"
  fi
}
mapfile -t written < <(ls data/written/*.jsonl)
half=$(( ${#written[@]} / 2 ))
(embed "$work/train-a.jsonl" "${written[@]:0:$half}"
 embed "$work/heldout-hard.jsonl" data/heldout/hard.jsonl
 embed "$work/heldout-puzzles.jsonl" data/heldout/puzzles.jsonl) &
first=$!
embed "$work/train-b.jsonl" "${written[@]:$half}" data/sources
embed "$work/heldout-traffic.jsonl" data/heldout/traffic.jsonl
wait "$first"
[[ -s "$work/train.jsonl" ]] || cat "$work/train-a.jsonl" "$work/train-b.jsonl" >"$work/train.jsonl"

[[ -s "$work/oof.jsonl" ]] || "$bin" classify train --data data/written data/sources \
  --features prose,context,rules,shape,dialog,script,grams \
  --calibrate-jsonl data/heldout/traffic.jsonl --target-share 0.06 \
  --out "$work/router-oof.json" --oof-out "$work/oof.jsonl"

bands=()
for band in "$@"; do bands+=(--band "$band"); done
DELIBERATE_BIN="$bin" python3 scripts/classifier/second_stage.py --work "$work" "${bands[@]}"
