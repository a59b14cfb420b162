#!/bin/bash
# A lazy mount of a snapshot stored in S3, with an empty local cache: the tree
# reads back exactly, the second mount is served from the cache, and when the
# server goes away a read of data never fetched fails with EIO within the
# configured deadline instead of hanging.
#
# Skips (77) without node or tests/s3/node_modules, or without /dev/fuse.
set -euo pipefail
source "$SRCDIR/tests/integration/lib.sh"
source "$SRCDIR/tests/s3/faults.sh"
S3DIR="$SRCDIR/tests/s3"
if ! command -v node >/dev/null || [ ! -d "$S3DIR/node_modules/s3rver" ]; then
	echo "skipped: node or tests/s3/node_modules missing (npm ci --prefix tests/s3)"
	exit 77
fi
[ -e /dev/fuse ] || { echo "skipped: no /dev/fuse"; exit 77; }
setup_tmp
MNT="$T/mnt"
cleanup() {
	"$HIBERBOX" umount "$MNT" >/dev/null 2>&1 || true
	"$S3DIR/run-s3rver.sh" stop "$T/s3" >/dev/null 2>&1 || true
	cleanup_tmp
}
trap cleanup EXIT

eval "$("$S3DIR/run-s3rver.sh" start "$T/s3" hbmount)" || fail "cannot start the S3 test server"
export HIBERBOX_REPO=s3://hbmount/repo
export HIBERBOX_S3_RETRY_BASE_MS=20 HIBERBOX_S3_CONNECT_TIMEOUT_MS=1000
export HIBERBOX_S3_TIMEOUT_MS=2000 HIBERBOX_S3_DEADLINE_MS=5000

log "a snapshot in S3"
hb_ok init >/dev/null
make_small_tree "$T/src" 300 2
randfile "$T/src/big.bin" $((8 << 20)) big
randfile "$T/src/later.bin" $((4 << 20)) later
randfile "$T/src/slow.bin" $((2 << 20)) slow
id=$(snapshot_create "$T/src")

log "mount with an empty cache: everything reads back exactly"
rm -rf "$HIBERBOX_HOME/cache"
mkdir -p "$MNT"
hb_ok mount "$id" "$MNT" >/dev/null
for f in $(cd "$T/src" && find . -type f ! -name later.bin ! -name slow.bin | sort); do
	cmp -s "$T/src/$f" "$MNT/$f" || bad "mounted $f differs from the source"
done
[ -d "$HIBERBOX_HOME/cache" ] || bad "the mount did not fill the local cache"

log "the mounted snapshot is pinned in the bucket: rm refuses it"
for _ in $(seq 100); do find "$T/s3" -path '*pins*' -type f | grep -q . && break; sleep 0.1; done
find "$T/s3" -path '*pins*' -type f | grep -q . || bad "no pin object in the bucket after a mount"
expect_error "rm of a snapshot mounted from S3" snapshot rm "$id" &&
	expect_in "$HB_ERR" "in use: mounted at .*$MNT" "rm of a snapshot mounted from S3"

# the small files stored as chunks (larger than what the manifest inlines)
small=$(cd "$T/src" && find . -type f -size +1k ! -name '*.bin' | sort)
nsmall=$(echo "$small" | wc -l)
[ "$nsmall" -ge 100 ] || fail "the test tree has only $nsmall small files stored as chunks"

log "a cold mount reads a directory's files through pack windows, not one request each"
hb_ok umount "$MNT" >/dev/null
[ -z "$(find "$T/s3" -path '*pins*' -type f)" ] || bad "the pin outlived its mount: $(find "$T/s3" -path '*pins*' -type f)"
rm -rf "$HIBERBOX_HOME/cache"
HIBERBOX_S3_TRACE="$T/trace" hb_ok mount "$id" "$MNT" >/dev/null
for f in $small; do
	cmp -s "$T/src/$f" "$MNT/$f" || bad "mounted $f differs from the source (cold, windowed)"
done
[ -s "$T/trace" ] || fail "HIBERBOX_S3_TRACE wrote no trace"
gets=$(grep -c ' GET repo/packs/' "$T/trace" || true)
log "$nsmall small files read with $gets pack requests"
[ "$gets" -ge 1 ] || bad "the trace shows no pack request at all"
[ "$gets" -le $((nsmall / 4)) ] || bad "$gets pack requests for $nsmall small files: no windowed reads"
if grep ' HEAD repo/snapshots/' "$T/trace" >/dev/null; then
	bad "mounting a full id checked the snapshot with a HEAD before fetching it"
fi
hb_ok umount "$MNT" >/dev/null

log "a tag or an id prefix names the same upper directory's snapshot on every mount"
# The upper's meta is checked while the repository resolves the name, which
# takes round trips here: the check must wait for the resolved id.
hb_ok tag hbtag "$id" >/dev/null
hb_ok mount hbtag "$MNT" --upper "$T/upper-tag" >/dev/null
echo kept >"$MNT/by-tag.txt"
hb_ok umount "$MNT" >/dev/null
grep -q "^base $id\$" "$T/upper-tag/meta" || bad "a new upper mounted by tag records $(sed -n 2p "$T/upper-tag/meta"), not $id"
for name in hbtag "${id:0:10}" "$id"; do
	hb_ok mount "$name" "$MNT" --upper "$T/upper-tag" >/dev/null
	[ "$(cat "$MNT/by-tag.txt" 2>/dev/null)" = kept ] || bad "mounted as $name, the upper's file is gone"
	hb_ok umount "$MNT" >/dev/null
done
other=$(snapshot_create "$T/src" --tag other)
if expect_error "another snapshot over that upper" mount other "$MNT" --upper "$T/upper-tag"; then
	[[ "$HB_ERR" == *"belongs to snapshot $id"* ]] || bad "another snapshot over that upper: $HB_ERR"
fi
mountpoint -q "$MNT" && { bad "another snapshot mounted over a foreign upper"; hb umount "$MNT"; }

log "a corrupted window: the chunks in it are fetched again, alone, and read right"
rm -rf "$HIBERBOX_HOME/cache"
hb_ok mount "$id" "$MNT" >/dev/null
fault corrupt 1 GET packs/
for f in $small; do
	cmp -s "$T/src/$f" "$MNT/$f" || bad "after a corrupted window, $f reads wrong (or EIO)"
done
[ "$(injected corrupt)" -ge 1 ] || bad "the corrupt fault was never injected"
clear_faults

log "every pack body corrupted: each read is right or EIO, never wrong data"
hb_ok umount "$MNT" >/dev/null
rm -rf "$HIBERBOX_HOME/cache"
hb_ok mount "$id" "$MNT" >/dev/null
fault corrupt 100000 GET packs/
# (the fault flips one byte per body: a chunk away from a window's middle
# may well arrive intact, and must then read right; big.bin spans several
# windows, so some read must fail whatever the pack layout)
neio=0
for f in $small big.bin; do
	if cat "$MNT/$f" >"$T/corrupt.out" 2>"$T/corrupt.err"; then
		cmp -s "$T/src/$f" "$T/corrupt.out" || bad "$f read wrong data from corrupted bodies"
	else
		grep -qi "input/output error" "$T/corrupt.err" ||
			bad "expected EIO with corrupted bodies, got: $(cat "$T/corrupt.err")"
		neio=$((neio + 1))
	fi
done
log "$neio of $((nsmall + 1)) files failed with EIO"
[ "$neio" -ge 1 ] || bad "no read failed although every pack body was corrupted"
clear_faults
for f in $small; do
	cmp -s "$T/src/$f" "$MNT/$f" || bad "once the corruption stopped, $f still reads wrong"
done
cmp -s "$T/src/big.bin" "$MNT/big.bin" || bad "once the corruption stopped, big.bin still reads wrong"
hb_ok umount "$MNT" >/dev/null

log "a read waiting on the store holds up no other request from its CPU"
# FUSE over io_uring queues requests per CPU and a queue starts with one
# thread (fs/uring.c): another must come up while that one waits.  Every
# pack GET waits 8 s (under the mount's request timeout); a stat from the
# same CPU needs no GET and must answer meanwhile.
rm -rf "$HIBERBOX_HOME/cache"
HIBERBOX_S3_TIMEOUT_MS=60000 HIBERBOX_S3_DEADLINE_MS=120000 hb_ok mount "$id" "$MNT" >/dev/null
fault delay 1000 GET packs/ 8000
taskset -c 0 cat "$MNT/slow.bin" >"$T/slow.out" &
reader=$!
for _ in $(seq 300); do [ "$(injected delay)" -ge 1 ] && break; sleep 0.1; done
[ "$(injected delay)" -ge 1 ] || bad "the read of slow.bin never reached the store"
first=$(echo "$small" | head -n 1)
t0=$(date +%s%N)
taskset -c 0 stat "$MNT/$first" >/dev/null || bad "stat of $first beside a waiting read"
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
kill -0 "$reader" 2>/dev/null || bad "the read of slow.bin was done before the stat (no wait on the store)"
[ "$waited" -lt 4000 ] || bad "a stat on the same CPU as a read waiting on the store took $waited ms"
clear_faults
wait "$reader" || bad "the delayed read of slow.bin failed"
cmp -s "$T/src/slow.bin" "$T/slow.out" || bad "the delayed read of slow.bin differs"
hb_ok umount "$MNT" >/dev/null

rm -rf "$HIBERBOX_HOME/cache"
hb_ok mount "$id" "$MNT" >/dev/null
cmp -s "$T/src/big.bin" "$MNT/big.bin" || bad "big.bin reads wrong"

log "the server goes away: an unread file fails with EIO, in bounded time"
"$S3DIR/run-s3rver.sh" stop "$T/s3" >/dev/null
start=$(date +%s)
if timeout 60 cat "$MNT/later.bin" >/dev/null 2>"$T/cat.err"; then
	bad "reading data never fetched succeeded with the server gone"
else
	rc=$?
	[ "$rc" -ne 124 ] || bad "a read with the server gone hung for 60 s"
	grep -qi "input/output error" "$T/cat.err" || bad "expected EIO, got: $(cat "$T/cat.err")"
fi
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -le 30 ] || bad "EIO took ${elapsed} s (deadline 5 s per request)"
# What was read before still reads (kernel or local cache), and the fs lives on.
cmp -s "$T/src/big.bin" "$MNT/big.bin" || bad "a file read before the outage no longer reads"
hb_ok umount "$MNT" >/dev/null

finish
