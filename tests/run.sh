#!/usr/bin/env bash
# roam's test runner: unit tests, fuzz-corpus regression, integration tests.
# Prints one line per test and ends with "N passed, N failed, N skipped".
# Usage: tests/run.sh [--only REGEX] [--valgrind]
set -u
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC_DIR/build}
LOG_DIR=$BUILD_DIR/test-logs
ONLY=""
VALGRIND=0
while [ $# -gt 0 ]; do
        case "$1" in
        --only) ONLY=$2; shift 2 ;;
        --valgrind) VALGRIND=1; shift ;;
        -h|--help) echo "usage: tests/run.sh [--only REGEX] [--valgrind]"; exit 0 ;;
        *) echo "tests/run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        esac
done
rm -rf "$LOG_DIR"; mkdir -p "$LOG_DIR"
export BUILD_DIR
passed=0 failed=0 skipped=0 failures=()

run_one() { # name cmd...
        local name=$1; shift
        if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then return; fi
        local log=$LOG_DIR/${name//\//_}.log start=$SECONDS rc=0
        timeout --kill-after=10 "${TEST_LIMIT:-${TEST_TIMEOUT:-900}}" "$@" >"$log" 2>&1 </dev/null || rc=$?
        local dt=$((SECONDS - start))
        case $rc in
        0) passed=$((passed + 1)); printf 'PASS %s (%ss)\n' "$name" "$dt" ;;
        77) skipped=$((skipped + 1)); printf 'SKIP %s: %s\n' "$name" "$(grep -m1 '^SKIP' "$log" | cut -c7-)" ;;
        *) failed=$((failed + 1)); failures+=("$name")
           printf 'FAIL %s (rc=%s, %ss); last lines of %s:\n' "$name" "$rc" "$dt" "$log"
           # a unit test's failed checks first: its log goes on after them
           grep -m 12 -E '^\[ +(ERROR|LINE|FAILED) +\]' "$log" | sed 's/^/    /'
           tail -n 25 "$log" | sed 's/^/    /' ;;
        esac
}

vg=()
if [ $VALGRIND = 1 ]; then
        vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
fi

if ! ls "$BUILD_DIR"/tests/unit/test-* >/dev/null 2>&1 && { [ -z "$ONLY" ] || [[ unit/ =~ $ONLY ]]; }; then
        # a build configured without cmocka has none: that is a failure, not a pass
        printf 'FAIL unit (none built: install libcmocka-dev, then meson setup --reconfigure %s)\n' "$BUILD_DIR"
        failed=$((failed + 1)); failures+=(unit)
fi
for t in "$BUILD_DIR"/tests/unit/test-*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        run_one "unit/$(basename "$t")" "${vg[@]}" "$t"
done
for t in "$BUILD_DIR"/tests/fuzz/fuzz-*-replay; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        n=$(basename "$t" -replay); n=${n#fuzz-}
        run_one "fuzz/$n" "${vg[@]}" "$t" "$SRC_DIR/tests/fuzz/corpus/$n"
done
if [ $VALGRIND = 1 ]; then
        export ROAM_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
fi
for t in "$SRC_DIR"/tests/integration/*.sh; do
        [ -f "$t" ] || continue
        # a test may ask for more time than the default with a line "# time limit: SECONDS"
        TEST_LIMIT=$(sed -n 's/^# time limit: \([0-9][0-9]*\)$/\1/p' "$t" | head -n 1)
        run_one "integration/$(basename "$t" .sh)" bash "$t"
        TEST_LIMIT=
done

if [ ${#failures[@]} -gt 0 ]; then
        echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
