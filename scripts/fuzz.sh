#!/usr/bin/env bash
# Run every libFuzzer target for a while: scripts/fuzz.sh [SECONDS]
# (or FUZZ_SECONDS; default 30 per target).
#
# Sets up (once) a clang build with -Dfuzz=true and ASan+UBSan in build-fuzz/
# (BUILD_DIR to change), builds the tests/fuzz/fuzz-* targets, and runs each
# against a scratch copy of its seed corpus, so nothing is written into the
# repository.  Exits non-zero if any target crashes, leaks or times out; the
# crashing input is kept and its path printed.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-30}}"
case "$seconds" in
''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

src="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$src/build-fuzz}"

if [ ! -f "$build/build.ninja" ]; then
	# -Wno-unknown-warning-option: the project passes gcc-only -W flags;
	# fuzzer-no-link: coverage feedback from the libraries, not just the target.
	CC=clang meson setup "$build" "$src" -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args="-Wno-unknown-warning-option -fsanitize=fuzzer-no-link" >/dev/null
fi
targets=()
for f in "$src"/tests/fuzz/fuzz-*.c; do
	name="$(basename "$f" .c)"
	[ "$name" = fuzz-main ] && continue
	targets+=("tests/fuzz/$name")
done
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz.sh: no fuzz targets" >&2; exit 1; }
ninja -C "$build" "${targets[@]}" >/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/hiberbox-fuzz.XXXXXX")"
status=0
for t in "${targets[@]}"; do
	name="$(basename "$t")"
	seeds="$src/tests/fuzz/corpus-${name#fuzz-}"
	corpus="$work/$name/corpus"
	mkdir -p "$corpus" "$work/$name/artifacts"
	[ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
	echo "== $name: ${seconds}s"
	export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
	if ! "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$work/$name/artifacts/" "$corpus" \
		>"$work/$name/log" 2>&1; then
		echo "!! $name failed; log: $work/$name/log; input(s):" >&2
		ls -1 "$work/$name/artifacts/" | sed "s|^|   $work/$name/artifacts/|" >&2
		grep -m1 -E 'ERROR|runtime error|==ERROR' "$work/$name/log" >&2 || tail -5 "$work/$name/log" >&2
		status=1
	else
		grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$name/log" \
			| sed 's/^/   /'
	fi
done
if [ "$status" = 0 ]; then
	rm -rf "$work"
	echo "fuzz: no crash in ${#targets[@]} target(s)"
fi
exit "$status"
