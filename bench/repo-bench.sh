#!/bin/bash
# repo-bench: hiberbox's repository against tar + zstd on a ~500 MB tree.
#
# Generates a mixed tree once (many small source-like files, large binaries
# half random and half compressible, compressible logs), then times, as the
# median of N runs with the page cache dropped before each timed step:
#   snapshot   hiberbox snapshot create (into an empty repository)
#              vs tar -I 'zstd -T0 -3' -cf
#   restore    hiberbox snapshot restore vs tar -I zstd -xf
#   unchanged  hiberbox snapshot create of the unchanged tree (parent reuse)
#              vs the first snapshot
#   stored     repository bytes vs the .tar.zst (and by kind: packs/,
#              index/, snapshots/, dicts/, config)
# and writes bench/results/repo-<UTC date>.json plus a table on stdout.
# See bench/README.md.
#
# usage: bench/repo-bench.sh [--hiberbox PATH] [--work DIR] [--runs N]
#                            [--size-mb MB] [--no-drop-caches] [--keep]
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
source "$SRCDIR/bench/lib-ext4.sh"
HB=${HIBERBOX:-$SRCDIR/build/tools/hiberbox}
WORK=${BENCH_WORK:-/var/tmp/hiberbox-bench}
RUNS=3
SIZE_MB=500
DROP=1
KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--hiberbox) HB=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--size-mb) SIZE_MB=$2; shift 2 ;;
	--no-drop-caches) DROP=0; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) sed -n '2,18p' "$0"; exit 0 ;;
	*) echo "repo-bench: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -x "$HB" ] || { echo "repo-bench: no hiberbox binary at $HB (build first or pass --hiberbox)" >&2; exit 1; }
HB=$(realpath "$HB")
for tool in tar zstd python3 openssl; do
	command -v "$tool" >/dev/null || { echo "repo-bench: needs $tool" >&2; exit 1; }
done
TREEGEN="$SRCDIR/tests/integration/treegen.py"
mkdir -p "$WORK"
TREE="$WORK/tree"
REPO="$WORK/repo"
OUTFS="$WORK/outfs"
OUT="$OUTFS/out"
TARZST="$WORK/tree.tar.zst"
cleanup() {
	out_drop
	rm -rf "$REPO" "$TARZST"
	[ "$KEEP" -eq 1 ] || rm -rf "$TREE"
}
trap cleanup EXIT
export HIBERBOX_HOME="$WORK/home"
export HIBERBOX_REPO="$REPO"
log() { printf '[repo-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- the page cache ------------------------------------------------------------
drop_note="dropped before each timed step"
if [ "$DROP" -eq 1 ]; then
	if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		DROP=0
		drop_note="NOT dropped: /proc/sys/vm/drop_caches is not writable here (run as root outside a restricted container); figures are warm-cache"
	fi
else
	drop_note="NOT dropped (--no-drop-caches): warm-cache figures"
fi
drop_caches() { [ "$DROP" -eq 0 ] || { sync; echo 3 >/proc/sys/vm/drop_caches; }; }

# --- where extracts and restores land ----------------------------------------------
# A fresh ext4 filesystem (a loop image) for each (see lib-ext4.sh: measured
# here, 70% of a restore's CPU in ext4's recently_deleted and 2-3x the time
# otherwise). Without loop devices: $WORK's filesystem, and the results say so.
export OUT_FS="a fresh ext4 image each"
out_drop() {
	ext4_image_drop "$OUTFS"
	rm -rf "$OUTFS"
}
out_fresh() { # an empty $OUT on a new filesystem
	out_drop
	mkdir -p "$OUTFS"
	if [ "$OUT_FS" = "a fresh ext4 image each" ] &&
		! ext4_image_mount "$OUTFS" $((tree_bytes * 3 + (256 << 20))); then
		OUT_FS="$WORK's filesystem (no loop mount here)"
		log "extracts and restores go to $OUT_FS"
	fi
	mkdir -p "$OUT"
}

# --- the tree (generated once, reused with --keep) --------------------------------
randbytes() { (openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -pbkdf2 -in /dev/zero 2>/dev/null || true) | head -c "$1"; }
stamp="size=$SIZE_MB v1"
if [ ! -f "$TREE/.bench-stamp" ] || [ "$(cat "$TREE/.bench-stamp")" != "$stamp" ]; then
	log "generating a ~${SIZE_MB} MB tree in $TREE"
	rm -rf "$TREE"
	mkdir -p "$TREE/bin"
	unit=$((SIZE_MB * 1048576 / 500)) # the shares below add up to ~500 units
	# ~9%: source-like files (30000 at 500 MB)
	python3 "$TREEGEN" small "$TREE/src" $((SIZE_MB * 60)) 1
	# ~30%: logs (compress ~5-8x)
	python3 "$TREEGEN" logs "$TREE/logs" $((unit * 150 / 1048576)) 1
	# ~30%: random binaries (incompressible)
	for i in 1 2 3 4 5 6; do randbytes $((unit * 25)) "rnd$i" >"$TREE/bin/blob-$i.bin"; done
	# ~30%: binary-like files: 32 KiB random then 32 KiB of structured data
	python3 - "$TREE/bin" $((unit * 25)) <<'EOF'
import os, struct, sys
d, size = sys.argv[1], int(sys.argv[2])
for i in range(6):
    with open(os.path.join(d, "lib-%d.so" % i), "wb") as f:
        n = 0
        k = 0
        while n < size:
            f.write(os.urandom(32768))
            f.write(b"".join(struct.pack("<IIQ", k, j, (k * j) & 0xFFFF) for j in range(2048)))
            n += 65536
            k += 1
        f.truncate(size)
EOF
	echo "$stamp" >"$TREE/.bench-stamp"
fi
tree_bytes=$(find "$TREE" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
tree_files=$(find "$TREE" -type f | wc -l)
log "tree: $tree_files files, $((tree_bytes / 1048576)) MiB; page cache $drop_note"

now_ns() { date +%s%N; }
# timed NAME CMD...: run CMD after dropping caches, append seconds to $WORK/t.NAME
timed() {
	local name=$1
	shift
	drop_caches
	local t0 t1 t2 TIMEFORMAT='%U %S'
	t0=$(now_ns)
	# bash's `time` gives the CPU seconds: (user + sys) / wall = cores used
	{ time "$@" >/dev/null 2>"$WORK/cmd.err"; } 2>"$WORK/cpu" ||
		{ echo "repo-bench: $* failed: $(cat "$WORK/cmd.err")" >&2; exit 1; }
	t1=$(now_ns)
	sync
	t2=$(now_ns)
	echo "$(((t1 - t0) / 1000)) $(((t2 - t0) / 1000)) $(cat "$WORK/cpu")" >>"$WORK/t.$name"
}
rm -f "$WORK"/t.*
declare -a stored=() tarsz=()
for run in $(seq 1 "$RUNS"); do
	log "run $run/$RUNS: tar + zstd"
	rm -f "$TARZST"
	timed tar_create tar -I 'zstd -T0 -3' -cf "$TARZST" -C "$TREE" .
	tarsz+=("$(stat -c %s "$TARZST")")
	out_fresh
	timed tar_extract tar -I zstd -xf "$TARZST" -C "$OUT"

	log "run $run/$RUNS: hiberbox"
	rm -rf "$REPO"
	out_drop
	"$HB" init >/dev/null
	timed hb_create "$HB" --quiet snapshot create "$TREE"
	id=$("$HB" snapshot list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
	stored+=("$(find "$REPO" -type f -printf '%s\n' | awk '{s += $1} END {print s}')")
	# where those bytes go: packs, index, snapshots (manifests), dicts, ...
	(cd "$REPO" && find . -type f ! -path './locks/*' -printf '%P %s\n') |
		awk '{split($1, p, "/"); s[p[1]] += $2} END {for (k in s) print k, s[k]}' >"$WORK/bytes-by-kind"
	timed hb_unchanged "$HB" --quiet snapshot create "$TREE"
	# the same with the metadata in cache: the tool's own cost, without the
	# disk reads of 30 000 inodes that any tool walking the tree pays cold
	DROP_SAVED=$DROP DROP=0
	timed hb_unchanged_warm "$HB" --quiet snapshot create "$TREE"
	DROP=$DROP_SAVED
	out_fresh
	timed hb_restore "$HB" --quiet snapshot restore "$id" "$OUT"
	out_drop
done

date_tag=$(date -u +%Y%m%d-%H%M)
mkdir -p "$SRCDIR/bench/results"
result="$SRCDIR/bench/results/repo-$date_tag.json"
python3 - "$WORK" "$result" "$tree_bytes" "$tree_files" "$drop_note" "$RUNS" \
	"$(git -C "$SRCDIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	"${stored[*]}" "${tarsz[*]}" <<'EOF'
import json, os, platform, statistics, sys
work, result, tree_bytes, tree_files, drop_note, runs, commit, stored, tarsz = sys.argv[1:10]
tree_bytes = int(tree_bytes)
by_kind = {k: int(v) for k, v in (l.split() for l in open(os.path.join(work, "bytes-by-kind")))}
def load(name):
    rows = [l.split() for l in open(os.path.join(work, "t." + name))]
    return ([int(r[0]) / 1e6 for r in rows], [int(r[1]) / 1e6 for r in rows],
            [(float(r[2]) + float(r[3])) / (int(r[0]) / 1e6) for r in rows])
t = {n: load(n) for n in ("tar_create", "tar_extract", "hb_create", "hb_unchanged",
                         "hb_unchanged_warm", "hb_restore")}
med = {n: statistics.median(v[0]) for n, v in t.items()}
med_sync = {n: statistics.median(v[1]) for n, v in t.items()}
cores = {n: statistics.median(v[2]) for n, v in t.items()}
stored_b = statistics.median(int(x) for x in stored.split())
tar_b = statistics.median(int(x) for x in tarsz.split())
mbs = lambda s: tree_bytes / 1e6 / s
ratios = {
    "snapshot_vs_tar": med["tar_create"] / med["hb_create"],
    "restore_vs_tar": med["tar_extract"] / med["hb_restore"],
    "restore_vs_tar_with_sync": med_sync["tar_extract"] / med_sync["hb_restore"],
    "unchanged_vs_first": med["hb_create"] / med["hb_unchanged"],
    "unchanged_warm_vs_first": med["hb_create"] / med["hb_unchanged_warm"],
    "stored_vs_tarzst": stored_b / tar_b,
}
targets = {"snapshot_vs_tar": (">=", 1.0), "restore_vs_tar": (">=", 1.5),
           "unchanged_vs_first": (">=", 20.0), "stored_vs_tarzst": ("<=", 1.0)}
met = {k: (ratios[k] >= v if op == ">=" else ratios[k] <= v) for k, (op, v) in targets.items()}
doc = {
    "bench": "repo", "commit": commit, "date_utc": os.path.basename(result)[5:-5],
    "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
    "tree": {"bytes": tree_bytes, "files": int(tree_files)},
    "runs": int(runs), "page_cache": drop_note, "output_fs": os.environ.get("OUT_FS", ""),
    "seconds_median": med, "seconds_median_incl_sync": med_sync,
    "seconds_all": {n: v[0] for n, v in t.items()},
    "cpu_cores_used_median": cores,
    "mb_per_s": {n: mbs(s) for n, s in med.items() if not n.startswith("hb_unchanged")},
    "bytes": {"repository": stored_b, "tar_zst": tar_b},
    "repository_bytes_by_kind": by_kind,
    "ratios": ratios, "targets": {k: "%s %g" % v for k, v in targets.items()}, "targets_met": met,
}
with open(result, "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
print("tree: %d files, %.0f MB; %s runs, median; page cache %s; extracts and restores onto %s"
      % (int(tree_files), tree_bytes / 1e6, runs, drop_note, doc["output_fs"]))
print("%-38s %9s %9s %9s %7s" % ("step", "seconds", "+sync", "MB/s", "cores"))
for n, label in (("tar_create", "tar -I 'zstd -T0 -3' -cf"), ("hb_create", "hiberbox snapshot create (first)"),
                 ("hb_unchanged", "hiberbox snapshot create (unchanged)"),
                 ("hb_unchanged_warm", "  the same, metadata cached"), ("tar_extract", "tar -I zstd -xf"),
                 ("hb_restore", "hiberbox snapshot restore")):
    print("%-38s %9.2f %9.2f %9.0f %7.2f" % (label[:38], med[n], med_sync[n], mbs(med[n]), cores[n]))
print("%-38s %9.1f MB" % (".tar.zst", tar_b / 1e6))
print("%-38s %9.1f MB" % ("repository after the first snapshot", stored_b / 1e6))
for k in sorted(by_kind, key=lambda k: -by_kind[k]):
    print("%-38s %9.3f MB" % ("  " + k + "/", by_kind[k] / 1e6))
print()
print("%-26s %8s  %-8s %s" % ("ratio", "value", "target", ""))
for k in ("snapshot_vs_tar", "restore_vs_tar", "unchanged_vs_first", "stored_vs_tarzst"):
    print("%-26s %8.2f  %-8s %s" % (k, ratios[k], "%s %g" % targets[k], "met" if met[k] else "NOT MET"))
print("%-26s %8.2f  (restore incl. sync vs tar incl. sync)" % ("restore_vs_tar_with_sync", ratios["restore_vs_tar_with_sync"]))
print("%-26s %8.2f  (unchanged snapshot with its metadata cached)" % ("unchanged_warm_vs_first", ratios["unchanged_warm_vs_first"]))
print("results: %s" % result)
EOF
