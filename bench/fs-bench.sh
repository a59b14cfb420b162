#!/bin/bash
# fs-bench: the hiberbox mount against the native filesystem and against
# fuse-overlayfs over a squashfuse lower (the writable FUSE stack others use
# to restore sandboxes), on a tree of many small files in a git repository.
#
#   mount      `hiberbox mount` until the first `ls` of the root answers (once
#              on the tree; median of runs+2 on a 50 000-file snapshot, with
#              the fs process's RSS after a stat of every file)
#   stat       warm `find . -type f -print0 | xargs -0 stat` (median of runs)
#   git        warm `git status` (median of runs)
#   read all   warm `tar -c` of the tree into a pipe: every file opened and
#              read (median of runs)
#   untar      extracting a tar of the tree onto the (empty) filesystem, each
#              side's files (native, upper directories) on a fresh ext4 loop
#              image; hiberbox also with the fs and tar pinned to one CPU
#   npm ci     `npm ci --offline` of a real project (express, lodash, axios,
#              react, react-dom; typescript, eslint, jest as dev dependencies:
#              ~420 packages, ~7 500 files) from a warm local npm cache, on a
#              fresh ext4 image each; only when the npm registry answers (the
#              cache is filled from it first) and not with NPM=no
#   read       sequential read of a 1 GiB file: cold (from the repository)
#              and warm (page cache), MB/s
#   cp         cp of that file inside the filesystem (copy_file_range), from
#              the repository and from an upper file, then sync
#   rss        resident memory of the hiberbox fs process after the stat run
#
# usage: bench/fs-bench.sh [--files N] [--read-mb MB] [--runs N] [--work DIR]
#        (HIBERBOX=path to the binary; default build/tools/hiberbox;
#         HIBERBOX_BASE=another binary: its untar is measured in the same run,
#         alternating with hiberbox's, for an A/B on a noisy machine)
# Prints a table with ratios to native and writes bench/results/fs-<UTC>.json.
# On a shared machine (other jobs, page cache drops) run it more than once.
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
source "$SRCDIR/bench/lib-ext4.sh"
HB=${HIBERBOX:-$SRCDIR/build/tools/hiberbox}
WORK=${BENCH_WORK:-/var/tmp/hiberbox-fs-bench}
FILES=30000
READ_MB=1024
RUNS=3
while [ $# -gt 0 ]; do
	case $1 in
	--files) FILES=$2; shift 2 ;;
	--read-mb) READ_MB=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	*) echo "usage: $0 [--files N] [--read-mb MB] [--runs N] [--work DIR]" >&2; exit 2 ;;
	esac
done
[ -c /dev/fuse ] || { echo "fs-bench: /dev/fuse is absent" >&2; exit 1; }

MOUNTS=()
cleanup() {
	for m in "${MOUNTS[@]}"; do
		"$HB" umount "$m" >/dev/null 2>&1 || fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	# and the loop filesystems of untar_on, made in a subshell, innermost first
	awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"
export HIBERBOX_HOME="$WORK/home"
export HIBERBOX_REPO="$WORK/repo"
export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
note() { echo "fs-bench: $*" >&2; } # each figure as soon as it is known
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# time_cmd DIR CMD...: median wall ms of RUNS warm runs (one warm-up first).
time_cmd() {
	local dir=$1
	shift
	(cd "$dir" && "$@" >/dev/null 2>&1) || true
	for _ in $(seq "$RUNS"); do
		local t
		t=$(date +%s%N)
		(cd "$dir" && "$@" >/dev/null 2>&1) || true
		ms "$t"
	done | median
}
stat_all() { find . -type f -print0 | xargs -0 stat >/dev/null; }
git_status() { git status --porcelain >/dev/null; }
# every file opened and read (tar skips reading when its archive is /dev/null)
read_all() { tar -cf - . | cat >/dev/null; }

echo "fs-bench: building a tree of $FILES files" >&2
mkdir -p "$WORK/tree/project"
python3 "$SRCDIR/tests/integration/treegen.py" small "$WORK/tree/project" "$FILES" 7
(cd "$WORK/tree/project" && git init -q -b main . && git config gc.auto 0 && git config maintenance.auto false && git add -A && git commit -q -m tree)
mkdir -p "$WORK/big"
head -c $((READ_MB * 1048576)) /dev/urandom >"$WORK/big/file"
tar -C "$WORK/tree" -cf "$WORK/tree.tar" project
mkdir -p "$WORK/empty"

"$HB" init >/dev/null
TREE_ID=$("$HB" snapshot create "$WORK/tree" 2>/dev/null | tail -n 1)
BIG_ID=$("$HB" snapshot create "$WORK/big" 2>/dev/null | tail -n 1)
EMPTY_ID=$("$HB" snapshot create "$WORK/empty" 2>/dev/null | tail -n 1)

# native
N_STAT=$(time_cmd "$WORK/tree/project" stat_all)
N_GIT=$(time_cmd "$WORK/tree/project" git_status)
N_READALL=$(time_cmd "$WORK/tree/project" read_all)
# Untars land on fresh ext4 filesystems (a loop image each): ext4 skips
# inodes freed in the last ~30 s, one by one, so on a disk where files were
# just deleted an untar can take 10x longer (measured: native 1.2 s, then
# 11.6 s right after deleting the first copy), whichever side it measures.
# Without loop devices it falls back to $WORK's filesystem and says so.
UNTAR_FS="fresh ext4 image"
fresh_fs() { # fresh_fs DIR: an empty filesystem mounted at DIR
	mkdir -p "$1"
	[ "$UNTAR_FS" = "fresh ext4 image" ] || return 0
	if ext4_image_mount "$1" 8G; then
		MOUNTS+=("$1")
	else
		UNTAR_FS="$WORK's filesystem (no loop mount)"
		note "untar: no loop mount here; untars go to $UNTAR_FS"
	fi
}
drop_fs() { # drop_fs DIR: unmount a fresh_fs and delete it
	if mountpoint -q "$1"; then ext4_image_drop "$1" && rmdir "$1"; else rm -rf "$1"; fi
}
fresh_fs "$WORK/native-untar"
sync
t=$(date +%s%N); tar -C "$WORK/native-untar" -xf "$WORK/tree.tar"; sync; N_UNTAR=$(ms "$t")
drop_fs "$WORK/native-untar"
cat "$WORK/big/file" >/dev/null # warm, like the mount's second read
t=$(date +%s%N); cat "$WORK/big/file" >/dev/null; t2=$(ms "$t")
N_READ=$((READ_MB * 1000 / (t2 > 0 ? t2 : 1)))
note "native: stat $N_STAT ms, git status $N_GIT ms, untar $N_UNTAR ms, read $N_READ MB/s"

# hiberbox
mkdir -p "$WORK/hb"
MOUNTS+=("$WORK/hb")
t=$(date +%s%N)
"$HB" mount "$TREE_ID" "$WORK/hb" --upper "$WORK/hb-upper"
ls "$WORK/hb" >/dev/null
H_MOUNT=$(ms "$t")
H_STAT=$(time_cmd "$WORK/hb/project" stat_all)
H_GIT=$(time_cmd "$WORK/hb/project" git_status)
H_READALL=$(time_cmd "$WORK/hb/project" read_all)
pid=$(python3 -c 'import json,sys
for m in json.load(sys.stdin):
    print(m["pid"])' <<<"$("$HB" mounts --json)" | head -n 1)
H_RSS=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
"$HB" umount "$WORK/hb"


mkdir -p "$WORK/hbu"
MOUNTS+=("$WORK/hbu")
# transport_of BIN: how a mount by BIN gets its requests (io_uring or
# /dev/fuse: the fs process's answer on its control socket)
transport_of() {
	local out
	"$1" mount "$EMPTY_ID" "$WORK/hbu" --upper "$WORK/hbt-upper" || return 1
	out=$(python3 - "$HIBERBOX_HOME/mounts" "$WORK/hbu" <<'PY'
import glob, json, os, socket, sys
for info in glob.glob(os.path.join(sys.argv[1], "*.json")):
    with open(info) as f:
        m = json.load(f)
    if os.path.realpath(m["mountpoint"]) == os.path.realpath(sys.argv[2]):
        s = socket.socket(socket.AF_UNIX)
        s.connect(info[:-5] + ".sock")
        s.sendall(b"transport\n")
        print(s.makefile().readline().split()[1])
PY
)
	"$1" umount "$WORK/hbu"
	rm -rf "$WORK/hbt-upper"
	echo "${out:-/dev/fuse}"
}
# untar_on BIN UPPER: ms of an untar onto a fresh mount of the empty snapshot
# (the upper directory on a fresh filesystem; PIN=CPU runs the fs and tar on
# that one CPU)
untar_on() {
	local t r
	fresh_fs "$2"
	${PIN:+taskset -c "$PIN"} "$1" mount "$EMPTY_ID" "$WORK/hbu" --upper "$2/upper"
	sync
	t=$(date +%s%N); ${PIN:+taskset -c "$PIN"} tar -C "$WORK/hbu" -xf "$WORK/tree.tar"; sync; r=$(ms "$t")
	echo "$r"
}
B_UNTAR=-
if [ -n "${HIBERBOX_BASE:-}" ]; then
	B_UNTAR=$(untar_on "$HIBERBOX_BASE" "$WORK/hbb-upper")
	"$HIBERBOX_BASE" umount "$WORK/hbu"
	drop_fs "$WORK/hbb-upper"
fi
H_UNTAR=$(untar_on "$HB" "$WORK/hbu-upper")
t=$(date +%s%N); C=$("$HB" commit "$WORK/hbu"); H_COMMIT=$(ms "$t")
"$HB" umount "$WORK/hbu"
drop_fs "$WORK/hbu-upper"
# The same with the fs and tar on one CPU: every request and reply then
# switches threads on that CPU instead of waking the other one, which on a VM
# whose idle vCPUs halt at once (guest_halt_poll_ns=0) costs an IPI and an exit
# each time.  The gap between the two figures is that wake-up cost.
H_UNTAR_1CPU=-
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
	H_UNTAR_1CPU=$(PIN=0 untar_on "$HB" "$WORK/hbu-upper")
	"$HB" umount "$WORK/hbu"
	drop_fs "$WORK/hbu-upper"
fi
# The same through /dev/fuse (HIBERBOX_FS_URING=0), where the mount above
# used FUSE over io_uring (fs/uring.c; "-" where the kernel has none).
H_TRANSPORT=$(transport_of "$HB")
H_UNTAR_DEV=-
if [ "$H_TRANSPORT" = io_uring ]; then
	H_UNTAR_DEV=$(HIBERBOX_FS_URING=0 untar_on "$HB" "$WORK/hbu-upper")
	"$HB" umount "$WORK/hbu"
	drop_fs "$WORK/hbu-upper"
fi
# And on a busy host (as one running many sandboxes is): a CPU-bound process
# per CPU beside each untar, native and both transports.
busy_untar() { # busy_untar CMD...: ms of CMD with every CPU kept busy
	local hogs=() i r
	for i in $(seq "$(nproc)"); do (while :; do :; done) & hogs+=($!); done
	r=$("$@")
	kill "${hogs[@]}"; wait "${hogs[@]}" 2>/dev/null
	echo "$r"
}
native_untar() {
	local t
	fresh_fs "$WORK/native-untar3"
	sync
	t=$(date +%s%N); tar -C "$WORK/native-untar3" -xf "$WORK/tree.tar"; sync; ms "$t"
}
N_UNTAR_BUSY=$(busy_untar native_untar)
drop_fs "$WORK/native-untar3"
H_UNTAR_BUSY=$(busy_untar untar_on "$HB" "$WORK/hbu-upper")
"$HB" umount "$WORK/hbu"
drop_fs "$WORK/hbu-upper"
H_UNTAR_DEV_BUSY=-
if [ "$H_TRANSPORT" = io_uring ]; then
	H_UNTAR_DEV_BUSY=$(HIBERBOX_FS_URING=0 busy_untar untar_on "$HB" "$WORK/hbu-upper")
	"$HB" umount "$WORK/hbu"
	drop_fs "$WORK/hbu-upper"
fi
note "untar: native $N_UNTAR ms, hiberbox $H_UNTAR ms ($H_TRANSPORT), through /dev/fuse $H_UNTAR_DEV ms, hiberbox with fs and tar on one CPU $H_UNTAR_1CPU ms ($UNTAR_FS)"
note "untar on a busy host: native $N_UNTAR_BUSY ms, hiberbox $H_UNTAR_BUSY ms, through /dev/fuse $H_UNTAR_DEV_BUSY ms"
[ "$B_UNTAR" = - ] || note "untar: hiberbox $H_UNTAR ms, HIBERBOX_BASE $B_UNTAR ms"
if [ -n "${HIBERBOX_BASE:-}" ]; then
	# native again between the two, and the base after: the average of the
	# neighbours is the baseline of each
	fresh_fs "$WORK/native-untar2"
	sync
	t=$(date +%s%N); tar -C "$WORK/native-untar2" -xf "$WORK/tree.tar"; sync; N_UNTAR2=$(ms "$t")
	drop_fs "$WORK/native-untar2"
	N_UNTAR=$(((N_UNTAR + N_UNTAR2) / 2))
fi

mkdir -p "$WORK/hbr"
MOUNTS+=("$WORK/hbr")
"$HB" mount "$BIG_ID" "$WORK/hbr" --upper "$WORK/hbr-upper"
t=$(date +%s%N); cat "$WORK/hbr/file" >/dev/null; t2=$(ms "$t")
H_READ_COLD=$((READ_MB * 1000 / (t2 > 0 ? t2 : 1)))
t=$(date +%s%N); cat "$WORK/hbr/file" >/dev/null; t2=$(ms "$t")
H_READ_WARM=$((READ_MB * 1000 / (t2 > 0 ? t2 : 1)))
# cp of the big file inside the filesystem (coreutils cp: copy_file_range),
# from the repository and then from that copy, each followed by a sync
t=$(date +%s%N); cp "$WORK/hbr/file" "$WORK/hbr/copy1"; sync; H_CP_LOWER=$(ms "$t")
t=$(date +%s%N); cp "$WORK/hbr/copy1" "$WORK/hbr/copy2"; sync; H_CP_UPPER=$(ms "$t")
"$HB" umount "$WORK/hbr"
t=$(date +%s%N); cp "$WORK/big/file" "$WORK/big/copy1"; sync; N_CP=$(ms "$t")
rm -f "$WORK/big/copy1"
note "cp of the ${READ_MB} MiB file: native $N_CP ms, hiberbox from the repository $H_CP_LOWER ms, from an upper file $H_CP_UPPER ms"
note "hiberbox: mount $H_MOUNT ms, stat $H_STAT ms, git status $H_GIT ms, untar $H_UNTAR ms, commit $H_COMMIT ms, read cold $H_READ_COLD / warm $H_READ_WARM MB/s, rss $H_RSS MiB"

# fuse-overlayfs over squashfuse
O_STAT=- O_GIT=- O_READALL=- O_UNTAR=- O_MOUNT=-
if command -v fuse-overlayfs >/dev/null && command -v squashfuse >/dev/null && command -v mksquashfs >/dev/null; then
	mksquashfs "$WORK/tree" "$WORK/tree.sqfs" -quiet -no-progress -comp zstd >/dev/null
	mksquashfs "$WORK/empty" "$WORK/empty.sqfs" -quiet -no-progress -comp zstd >/dev/null
	mkdir -p "$WORK/sq" "$WORK/ov" "$WORK/ov-up" "$WORK/ov-work"
	MOUNTS+=("$WORK/ov" "$WORK/sq")
	t=$(date +%s%N)
	squashfuse "$WORK/tree.sqfs" "$WORK/sq"
	fuse-overlayfs -o "lowerdir=$WORK/sq,upperdir=$WORK/ov-up,workdir=$WORK/ov-work" "$WORK/ov"
	ls "$WORK/ov" >/dev/null
	O_MOUNT=$(ms "$t")
	O_STAT=$(time_cmd "$WORK/ov/project" stat_all)
	O_GIT=$(time_cmd "$WORK/ov/project" git_status)
	O_READALL=$(time_cmd "$WORK/ov/project" read_all)
	fusermount3 -u "$WORK/ov"
	fusermount3 -u "$WORK/sq"
	rm -rf "$WORK/ov-up" "$WORK/ov-work"
	fresh_fs "$WORK/ov-fs"
	mkdir -p "$WORK/ov-fs/up" "$WORK/ov-fs/work"
	squashfuse "$WORK/empty.sqfs" "$WORK/sq"
	fuse-overlayfs -o "lowerdir=$WORK/sq,upperdir=$WORK/ov-fs/up,workdir=$WORK/ov-fs/work" "$WORK/ov"
	t=$(date +%s%N); tar -C "$WORK/ov" -xf "$WORK/tree.tar"; sync; O_UNTAR=$(ms "$t")
	fusermount3 -u "$WORK/ov"
	fusermount3 -u "$WORK/sq"
	drop_fs "$WORK/ov-fs"
fi

# npm ci: what a sandbox does most, node_modules written by npm itself
# (tarballs unpacked by node, many small writes and renames) rather than by tar.
N_NPM=- H_NPM=- O_NPM=-
if [ "${NPM:-auto}" != no ] && command -v npm >/dev/null && timeout 20 npm ping >/dev/null 2>&1; then
	NPMW=$WORK/npm
	mkdir -p "$NPMW/proj"
	cat >"$NPMW/proj/package.json" <<'PKG'
{"name": "app", "version": "1.0.0", "private": true,
 "dependencies": {"express": "4.21.2", "lodash": "4.17.21", "axios": "1.7.9", "react": "18.3.1", "react-dom": "18.3.1"},
 "devDependencies": {"typescript": "5.7.2", "eslint": "9.17.0", "jest": "29.7.0"}}
PKG
	npm_flags=(--cache "$NPMW/cache" --no-audit --no-fund --no-update-notifier --loglevel=error)
	# the lock file and a cache that --offline can work from (ci asks for
	# metadata that install did not keep)
	if (cd "$NPMW/proj" && npm install "${npm_flags[@]}" && rm -rf node_modules &&
		npm ci --prefer-offline "${npm_flags[@]}" && rm -rf node_modules) >"$NPMW/log" 2>&1; then
		npm_ci_in() { # npm_ci_in DIR: ms of npm ci into DIR
			local t
			mkdir -p "$1"
			cp "$NPMW/proj/package.json" "$NPMW/proj/package-lock.json" "$1/"
			sync
			t=$(date +%s%N)
			(cd "$1" && npm ci --offline "${npm_flags[@]}" >/dev/null 2>&1) || { echo -; return; }
			sync
			ms "$t"
		}
		fresh_fs "$WORK/native-npm"
		N_NPM=$(npm_ci_in "$WORK/native-npm/app")
		drop_fs "$WORK/native-npm"
		fresh_fs "$WORK/hbn-upper"
		"$HB" mount "$EMPTY_ID" "$WORK/hbu" --upper "$WORK/hbn-upper/upper"
		H_NPM=$(npm_ci_in "$WORK/hbu/app")
		"$HB" umount "$WORK/hbu"
		drop_fs "$WORK/hbn-upper"
		if [ -f "$WORK/empty.sqfs" ]; then
			fresh_fs "$WORK/ovn-fs"
			mkdir -p "$WORK/ovn-fs/up" "$WORK/ovn-fs/work"
			squashfuse "$WORK/empty.sqfs" "$WORK/sq"
			fuse-overlayfs -o "lowerdir=$WORK/sq,upperdir=$WORK/ovn-fs/up,workdir=$WORK/ovn-fs/work" "$WORK/ov"
			O_NPM=$(npm_ci_in "$WORK/ov/app")
			fusermount3 -u "$WORK/ov"
			fusermount3 -u "$WORK/sq"
			drop_fs "$WORK/ovn-fs"
		fi
		# native again: the mean of the two native runs is the baseline
		fresh_fs "$WORK/native-npm2"
		n2=$(npm_ci_in "$WORK/native-npm2/app")
		drop_fs "$WORK/native-npm2"
		[ "$N_NPM" = - ] || [ "$n2" = - ] || N_NPM=$(((N_NPM + n2) / 2))
		note "npm ci: native $N_NPM ms (mean of two), hiberbox $H_NPM ms, fuse-overlayfs $O_NPM ms"
	else
		note "npm ci: skipped, filling the npm cache failed: $(tail -n 2 "$NPMW/log" | tr '\n' ' ')"
	fi
	rm -rf "$NPMW"
else
	note "npm ci: skipped (no npm, the registry does not answer, or NPM=no)"
fi

# Issue 3's mount figure: a 50 000-file snapshot (500 directories of 100
# small files) from `hiberbox mount` to the answer of the first `ls`, the
# median of RUNS+2 mounts with the repository in the page cache; then the fs
# process's RSS after every file of it was stat'ed.  It runs last: ext4 avoids
# reusing inodes deleted in the last ~30 s, so deleting 50 000 files just
# before an untar would slow that untar's inode allocation.
python3 - "$WORK/t50k" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(500):
    p = os.path.join(root, "d%03d" % d)
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, "f%03d.txt" % f), "w") as fh:
            fh.write("file %d of dir %d\n" % (f, d) * (1 + f % 7))
PY
T50K_ID=$("$HB" --quiet snapshot create "$WORK/t50k" | tail -n 1)
mkdir -p "$WORK/m50k"
mounts50k=()
for i in $(seq $((RUNS + 2))); do
	rm -rf "$WORK/m50k-upper"
	t=$(date +%s%N)
	"$HB" mount "$T50K_ID" "$WORK/m50k" --upper "$WORK/m50k-upper"
	ls "$WORK/m50k" >/dev/null
	mounts50k+=("$(ms "$t")")
	if [ "$i" -eq 1 ]; then
		find "$WORK/m50k" -type f -print0 | xargs -0 stat >/dev/null
		pid=$(python3 -c 'import json,sys
for m in json.load(sys.stdin):
    print(m["pid"])' <<<"$("$HB" mounts --json)" | head -n 1)
		H_RSS50K=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
	fi
	"$HB" umount "$WORK/m50k"
done
H_MOUNT50K=$(printf '%s\n' "${mounts50k[@]}" | median)
note "hiberbox: 50k-file mount to first ls ${mounts50k[*]} ms (median $H_MOUNT50K), rss after stat of all $H_RSS50K MiB"
rm -rf "$WORK/t50k"

ratio() { [ "$2" = - ] && echo - || awk -v a="$2" -v b="$1" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
printf '%-28s %10s %10s %8s %12s %8s\n' "($FILES files)" native hiberbox ratio overlay+sq ratio
printf '%-28s %10s %10s %8s %12s %8s\n' "warm find+stat (ms)" "$N_STAT" "$H_STAT" "$(ratio "$N_STAT" "$H_STAT")" "$O_STAT" "$(ratio "$N_STAT" "$O_STAT")"
printf '%-28s %10s %10s %8s %12s %8s\n' "warm git status (ms)" "$N_GIT" "$H_GIT" "$(ratio "$N_GIT" "$H_GIT")" "$O_GIT" "$(ratio "$N_GIT" "$O_GIT")"
printf '%-28s %10s %10s %8s %12s %8s\n' "warm tar c of every file (ms)" "$N_READALL" "$H_READALL" "$(ratio "$N_READALL" "$H_READALL")" "$O_READALL" "$(ratio "$N_READALL" "$O_READALL")"
printf '%-28s %10s %10s %8s %12s %8s\n' "untar (ms)" "$N_UNTAR" "$H_UNTAR" "$(ratio "$N_UNTAR" "$H_UNTAR")" "$O_UNTAR" "$(ratio "$N_UNTAR" "$O_UNTAR")"
printf '%-28s %10s %10s %8s %12s %8s\n' "npm ci (ms)" "$N_NPM" "$H_NPM" "$(ratio "$N_NPM" "$H_NPM")" "$O_NPM" "$(ratio "$N_NPM" "$O_NPM")"
printf '%-28s %10s %10s %8s\n' "untar, fs+tar on 1 CPU (ms)" "$N_UNTAR" "$H_UNTAR_1CPU" "$(ratio "$N_UNTAR" "$H_UNTAR_1CPU")"
printf '%-28s %10s %10s %8s\n' "untar, /dev/fuse (ms)" "$N_UNTAR" "$H_UNTAR_DEV" "$(ratio "$N_UNTAR" "$H_UNTAR_DEV")"
printf '%-28s %10s %10s %8s\n' "untar, busy host (ms)" "$N_UNTAR_BUSY" "$H_UNTAR_BUSY" "$(ratio "$N_UNTAR_BUSY" "$H_UNTAR_BUSY")"
printf '%-28s %10s %10s %8s\n' "  the same, /dev/fuse (ms)" "$N_UNTAR_BUSY" "$H_UNTAR_DEV_BUSY" "$(ratio "$N_UNTAR_BUSY" "$H_UNTAR_DEV_BUSY")"
[ "$B_UNTAR" = - ] || printf '%-28s %10s %10s %8s\n' "untar, HIBERBOX_BASE (ms)" "$N_UNTAR" "$B_UNTAR" "$(ratio "$N_UNTAR" "$B_UNTAR")"
printf '%-28s %10s %10s %8s %12s\n' "mount to first ls (ms)" - "$H_MOUNT" "" "$O_MOUNT"
printf '%-28s %10s %10s\n' "50k files: mount to ls (ms)" - "$H_MOUNT50K"
printf '%-28s %10s %10s\n' "50k files: RSS, all stat'ed" - "$H_RSS50K"
printf '%-28s %10s %10s\n' "commit after untar (ms)" - "$H_COMMIT"
printf '%-28s %10s %10s %8s\n' "cp big file, lower (ms)" "$N_CP" "$H_CP_LOWER" "$(ratio "$N_CP" "$H_CP_LOWER")"
printf '%-28s %10s %10s %8s\n' "cp big file, upper (ms)" "$N_CP" "$H_CP_UPPER" "$(ratio "$N_CP" "$H_CP_UPPER")"
printf '%-28s %10s %10s\n' "seq read cold (MB/s)" - "$H_READ_COLD"
printf '%-28s %10s %10s %8s\n' "seq read warm (MB/s)" "$N_READ" "$H_READ_WARM" "$(ratio "$H_READ_WARM" "$N_READ")"
printf '%-28s %10s %10s\n' "fs process RSS (MiB)" - "$H_RSS"

mkdir -p "$SRCDIR/bench/results"
out="$SRCDIR/bench/results/fs-$(date -u +%Y%m%dT%H%M%SZ).json"
cat >"$out" <<JSON
{"files": $FILES, "read_mb": $READ_MB, "runs": $RUNS, "untar_fs": "$UNTAR_FS",
 "native": {"stat_ms": $N_STAT, "git_status_ms": $N_GIT, "read_all_ms": $N_READALL, "untar_ms": $N_UNTAR, "untar_busy_ms": $N_UNTAR_BUSY, "npm_ci_ms": "$N_NPM", "cp_big_ms": $N_CP, "read_warm_mbps": $N_READ},
 "hiberbox": {"stat_ms": $H_STAT, "git_status_ms": $H_GIT, "read_all_ms": $H_READALL, "untar_ms": $H_UNTAR, "npm_ci_ms": "$H_NPM", "mount_ms": $H_MOUNT,
              "mount_50k_ms": $H_MOUNT50K, "rss_50k_mib": $H_RSS50K,
              "cp_big_lower_ms": $H_CP_LOWER, "cp_big_upper_ms": $H_CP_UPPER,
              "commit_ms": $H_COMMIT, "untar_1cpu_ms": "$H_UNTAR_1CPU", "transport": "$H_TRANSPORT", "untar_devfuse_ms": "$H_UNTAR_DEV",
              "untar_busy_ms": $H_UNTAR_BUSY, "untar_devfuse_busy_ms": "$H_UNTAR_DEV_BUSY", "base_untar_ms": "$B_UNTAR", "read_cold_mbps": $H_READ_COLD, "read_warm_mbps": $H_READ_WARM, "rss_mib": $H_RSS},
 "overlay_squashfuse": {"stat_ms": "$O_STAT", "git_status_ms": "$O_GIT", "read_all_ms": "$O_READALL", "untar_ms": "$O_UNTAR", "npm_ci_ms": "$O_NPM", "mount_ms": "$O_MOUNT"}}
JSON
echo "fs-bench: wrote $out" >&2
