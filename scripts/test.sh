#!/usr/bin/env bash
# `make test`: the whole suite as two pytest runs at the same time. The tests that need no stack
# (tests/unit, tests/tools: ~2.5 min, most of it one CPU) run beside the ones that start the
# local stack and use it (the rest, ~9 min, which leave about one of the machine's two CPUs idle:
# the emulators and the worker wait on each other more than they compute). Serially they took
# ~11.5 min. The stack's tests print as they go; the others write to tests/artifacts/ and their
# summary is printed at the end. Extra arguments go to both runs (e.g. `-x`, `-k name`).
# Exit status: the first non-zero of the two.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=venv/bin/python
NO_STACK=(tests/unit tests/tools)
STACK=(tests/emulator tests/e2e tests/load tests/browser)
mkdir -p tests/artifacts
log=tests/artifacts/tests-without-stack.log

# Its own process group, stopped with everything it started if this script ends first; niced,
# so that it takes the CPU the stack's tests leave idle rather than slowing them.
setsid nice -n 10 "$PY" -m pytest "${NO_STACK[@]}" -p no:cacheprovider "$@" >"$log" 2>&1 &
side=$!
trap 'kill -- -"$side" 2>/dev/null; wait "$side" 2>/dev/null' EXIT INT TERM

"$PY" -m pytest "${STACK[@]}" "$@"
stack_rc=$?

wait "$side"
side_rc=$?
trap - EXIT INT TERM

echo
echo "=== ${NO_STACK[*]} (run beside the above; whole log: $log) ==="
# Its failures and errors in full, then its summary.
if [ "$side_rc" -ne 0 ]; then
    sed -n '/^=\+ \(FAILURES\|ERRORS\) =\+$/,$p' "$log"
else
    tail -n 1 "$log"
fi

if [ "$stack_rc" -ne 0 ]; then exit "$stack_rc"; fi
exit "$side_rc"
