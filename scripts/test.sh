#!/usr/bin/env bash
# Install what is needed, build (plain and ASan+UBSan) and run every test.
#   scripts/test.sh               everything (what CI runs)
#   FUZZ_SECONDS=N                seconds per fuzz target (default 20; 0 skips fuzzing)
# Unit and fuzz-replay tests run under ASan+UBSan; integration, filesystem,
# S3 and sandbox tests run on the plain build (sanitizers would slow the real
# trees they work on without finding more there).
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --asan || { echo "test: setup failed" >&2; exit 1; }

passed=0 failed=0 skipped=0 status=0
run_suite() { # build-dir label meson-test-args...
	local dir=$1 label=$2; shift 2
	echo "== $label"
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "$dir/test-summary.txt"
	local rc=${PIPESTATUS[0]}
	local ok fail skip
	ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$dir/test-summary.txt" | tail -1)
	fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$dir/test-summary.txt" | tail -1)
	skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$dir/test-summary.txt" | tail -1)
	timeout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$dir/test-summary.txt" | tail -1)
	passed=$((passed + ${ok:-0})); failed=$((failed + ${fail:-0} + ${timeout:-0})); skipped=$((skipped + ${skip:-0}))
	[ "$rc" -eq 0 ] || status=1
}

run_suite build-asan "unit and fuzz-replay tests (ASan+UBSan)" --suite unit --suite fuzz
run_suite build "integration, filesystem, S3 and sandbox tests" --no-suite unit --no-suite fuzz

fuzz_seconds=${FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ] && [ -x scripts/fuzz.sh ]; then
	echo "== libFuzzer targets, ${fuzz_seconds}s each"
	if scripts/fuzz.sh "$fuzz_seconds"; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
exit $status
