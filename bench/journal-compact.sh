#!/bin/bash
# journal-compact: how long changes on a live mount wait while its journal is
# compacted (fs/upper.c compact_run), at a given number of changed nodes.
#
# Once: a snapshot of a small tree is mounted and --nodes files are created
# in it (in directories of 1 000), which journals a node and an entry each;
# the upper directory is kept.  Then each run mounts that upper again with
# the compaction floor set to the journal's length (HIBERBOX_FS_TEST_COMPACT_BYTES),
# so that the first chmod starts a compaction of the whole state, waits for
# the fs log's "journal compacted ... changes waited X ms (state, Y ms of
# CPU) + Z ms (switch)" line and unmounts.  With --base, the runs alternate
# between the two binaries (the machine is noisy: compare within one
# invocation).  Both must read the same journal format.
#
# usage: bench/journal-compact.sh [--hiberbox PATH] [--base PATH] [--nodes N]
#                                 [--runs N] [--work DIR]
# Prints one line per run (binary, X, Y, Z, journal bytes) and the medians.
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
HB=${HIBERBOX:-$SRCDIR/build/tools/hiberbox}
BASE=""
NODES=100000
RUNS=5
WORK=${BENCH_WORK:-/var/tmp/hiberbox-journal-compact}
while [ $# -gt 0 ]; do
	case $1 in
	--hiberbox) HB=$2; shift 2 ;;
	--base) BASE=$2; shift 2 ;;
	--nodes) NODES=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	*) echo "usage: $0 [--hiberbox PATH] [--base PATH] [--nodes N] [--runs N] [--work DIR]" >&2
	   exit 2 ;;
	esac
done
[ -c /dev/fuse ] || { echo "journal-compact: /dev/fuse is absent" >&2; exit 1; }
for b in "$HB" ${BASE:+"$BASE"}; do
	[ -x "$b" ] || { echo "journal-compact: no hiberbox binary at $b" >&2; exit 1; }
done
[[ "$NODES" =~ ^[0-9]+$ && "$RUNS" =~ ^[0-9]+$ ]] || { echo "journal-compact: --nodes and --runs take numbers" >&2; exit 2; }

M="$WORK/mnt"
cleanup() {
	"$HB" umount "$M" >/dev/null 2>&1 || umount -l "$M" 2>/dev/null || true
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK/src/lower" "$M"
export HIBERBOX_HOME="$WORK/home" HIBERBOX_REPO="$WORK/repo"
U="$WORK/upper"
printf 'lower\n' >"$WORK/src/lower/f"
"$HB" init >/dev/null
ID=$("$HB" --quiet snapshot create "$WORK/src" | tail -n 1)

# No compaction while the files are made: the runs compact them all at once.
HIBERBOX_FS_TEST_COMPACT_BYTES=$((1 << 40)) "$HB" mount "$ID" "$M" --upper "$U" >/dev/null
python3 - "$M" "$NODES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, 'd%d' % (i // 1000))
    if i % 1000 == 0:
        os.mkdir(d)
    os.close(os.open(os.path.join(d, 'f%d' % i), os.O_CREAT | os.O_WRONLY, 0o644))
PY
"$HB" umount "$M" >/dev/null
echo "journal-compact: $NODES files made, journal $(stat -c %s "$U/journal") bytes"

LOG="$HIBERBOX_HOME/fs.log"
# one_run BINARY: prints "X Y Z NEW_BYTES" of the compaction it starts
one_run() {
	local hb=$1 before lines
	before=$(grep -c "journal compacted" "$LOG" 2>/dev/null || true)
	HIBERBOX_FS_TEST_COMPACT_BYTES=$(stat -c %s "$U/journal") \
		"$hb" mount "$ID" "$M" --upper "$U" >/dev/null
	chmod 600 "$M/lower/f"
	for _ in $(seq 600); do
		lines=$(grep -c "journal compacted" "$LOG" || true)
		[ "$lines" -gt "${before:-0}" ] && break
		sleep 0.1
	done
	chmod 644 "$M/lower/f"
	"$hb" umount "$M" >/dev/null
	grep "journal compacted" "$LOG" | tail -n 1 |
		sed -E 's/.*-> ([0-9]+) bytes; changes waited ([0-9.]+) ms \(state, ([0-9.]+) ms of CPU\) \+ ([0-9.]+) ms.*/\2 \3 \4 \1/'
}

results=()
for r in $(seq "$RUNS"); do
	for b in "$HB" ${BASE:+"$BASE"}; do
		out=$(one_run "$b")
		printf '%-40s run %d: waited %s ms (state, %s ms CPU) + %s ms (switch), %s bytes\n' \
			"$b" "$r" $out
		results+=("$b $out")
	done
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    b, x, y, z, n = line.split()
    runs.setdefault(b, []).append((float(x), float(y), float(z)))
for b, v in runs.items():
    med = [statistics.median(c) for c in zip(*v)]
    print("%s: median state wait %.1f ms, state CPU %.1f ms, switch %.1f ms (%d runs)" % (b, *med, len(v)))'
