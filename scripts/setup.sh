#!/usr/bin/env bash
# Idempotent setup of everything promptq needs on a fresh machine: the Python virtual
# environment (also the functions codebase's venv, which the Firebase CLI wants at ./venv),
# the Cloud Tasks emulator's own virtual environment (it pins protobuf<5), and the npm
# packages (Firebase CLI, Firebase JS SDK, playwright-core). Checks the prerequisites that
# cannot be installed from here (Java, the gcloud Firestore emulator, Node) and says what
# to install. Re-running it is cheap: each step is skipped when its inputs did not change.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3.11}

die() { echo "setup: $*" >&2; exit 1; }

command -v "$py" >/dev/null || die "Python 3.11 is required ($py not found): install python3.11."
command -v node >/dev/null || die "Node.js 20+ is required for the Firebase CLI: install nodejs and npm."
command -v npm >/dev/null || die "npm is required: install npm."
command -v java >/dev/null || die "Java 17+ is required for the Firestore emulator: apt-get install openjdk-17-jre-headless."
command -v gcloud >/dev/null || die "The Google Cloud CLI is required for the Firestore emulator: install google-cloud-cli and google-cloud-cli-firestore-emulator."
gcloud_root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
[ -n "$gcloud_root" ] && [ -d "$gcloud_root/platform/cloud-firestore-emulator" ] \
  || die "The gcloud Firestore emulator component is missing: install google-cloud-cli-firestore-emulator (or 'gcloud components install cloud-firestore-emulator')."

# Debian's Chromium for the browser test (its own download, as playwright does, fails offline).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's chromium (browser test)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    die "Chromium is required for the browser test: apt-get install -y chromium"
  fi
fi

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

# The steps are independent: they run at once (a fresh machine waits for the slowest, not the
# sum), each logging to .stack/setup-<step>.log, which is printed if it fails.
mkdir -p .stack
pids=() names=()
step() {  # step NAME COMMAND...: run in the background
  local name=$1; shift
  ( "$@" ) > ".stack/setup-$name.log" 2>&1 &
  pids+=($!) names+=("$name")
}

# uv (from PyPI, pinned) builds the virtual environments: the same packages as pip, resolved
# and installed in seconds from its cache instead of a minute or two.
UV_VERSION=0.13.9
uv=.venvs/uv/bin/uv
case "$("$uv" --version 2>/dev/null)" in
  "uv $UV_VERSION"*) ;;
  *)
    echo "setup: installing uv $UV_VERSION (.venvs/uv)"
    mkdir -p .venvs .stack
    [ -x .venvs/uv/bin/python ] || "$py" -m venv .venvs/uv
    .venvs/uv/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION" > .stack/setup-uv.log 2>&1 \
      || { cat .stack/setup-uv.log >&2; die "could not install uv from PyPI"; }
    ;;
esac

# 1. Main virtual environment (functions runtime + dev/test tools). --seed: it has pip too.
main_venv() {
  local want; want=$(stamp requirements.txt scripts/requirements-dev.txt pyproject.toml)
  [ "$(cat venv/.promptq-stamp 2>/dev/null)" != "$want" ] || return 0
  echo "setup: creating ./venv (functions + dev dependencies)"
  [ -x venv/bin/python ] || "$uv" venv -q --seed --python "$py" venv
  "$uv" pip install -q --python venv/bin/python -r scripts/requirements-dev.txt
  "$uv" pip install -q --python venv/bin/python --no-deps -e .
  echo "$want" > venv/.promptq-stamp
}

# 2. Cloud Tasks emulator venv: gcloud-tasks-emulator pins protobuf<5 and google-cloud-tasks<3.
tasks_venv() {
  local want; want=$(stamp scripts/requirements-tasks-emulator.txt)
  [ "$(cat .venvs/tasks-emulator/.promptq-stamp 2>/dev/null)" != "$want" ] || return 0
  echo "setup: creating .venvs/tasks-emulator"
  mkdir -p .venvs
  [ -x .venvs/tasks-emulator/bin/python ] || "$uv" venv -q --python "$py" .venvs/tasks-emulator
  "$uv" pip install -q --python .venvs/tasks-emulator/bin/python -r scripts/requirements-tasks-emulator.txt
  echo "$want" > .venvs/tasks-emulator/.promptq-stamp
}

# 3. npm packages of a folder (npm ci), when its package.json or lock changed. A folder whose
# dependencies are all from the registry shares one installed copy per lock between the
# checkouts of this machine (~/.cache/promptq/npm/<hash>, linked as its node_modules): a fresh
# clone does not unpack the Firebase CLI's 300 MB again. A folder that links local packages
# (file:) installs its own.
NPM_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/promptq/npm
npm_folder() {
  local dir=$1 want; want=$(stamp "$dir/package.json" "$dir/package-lock.json")
  [ "$(cat "$dir/node_modules/.promptq-stamp" 2>/dev/null)" != "$want" ] || return 0
  if grep -q '"file:' "$dir/package.json"; then
    echo "setup: installing npm packages in $dir/"
    rm -f "$dir/node_modules" 2>/dev/null || true
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$dir/node_modules/.promptq-stamp"
    return 0
  fi
  local shared="$NPM_CACHE/$want"
  if [ "$(cat "$shared/node_modules/.promptq-stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing npm packages in $dir/ (shared: $shared)"
    rm -rf "$shared" && mkdir -p "$shared"
    cp "$dir/package.json" "$dir/package-lock.json" "$shared/"
    (cd "$shared" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$shared/node_modules/.promptq-stamp"
  fi
  rm -rf "$dir/node_modules"
  ln -s "$shared/node_modules" "$dir/node_modules"
}

step venv main_venv
step tasks-venv tasks_venv
# The Firebase CLI (infra/), the web page's SDK + playwright-core (web/), the npm package's
# TypeScript, SDK and React for its tests (packages/web/), and the React example app's Vite
# and React (examples/react/, which links packages/web).
for dir in infra web packages/web examples/react; do
  step "npm-${dir//\//-}" npm_folder "$dir"
done

failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    grep -h '^setup:' ".stack/setup-${names[$i]}.log" || true
  else
    failed=1
    echo "setup: ${names[$i]} failed:" >&2
    tail -n 40 ".stack/setup-${names[$i]}.log" >&2
  fi
done
[ "$failed" = 0 ] || die "see the output above"
echo "setup: ok"
