#!/bin/bash
# check on an s3:// repository verifies the bucket's objects, not this host's
# cached copies of them: a pack, a manifest or the config damaged in the
# bucket is an error even where the cache still holds a good copy (the host
# that wrote them has them all cached).
#
# Skips (77) without node or tests/s3/node_modules (npm ci --prefix tests/s3).
set -euo pipefail
source "$SRCDIR/tests/integration/lib.sh"
source "$SRCDIR/tests/s3/faults.sh"
s3_test_start hbtest
export HIBERBOX_REPO=s3://hbtest/repo
export HIBERBOX_S3_RETRY_BASE_MS=20 HIBERBOX_S3_TIMEOUT_MS=3000 HIBERBOX_S3_CONNECT_TIMEOUT_MS=2000
export HIBERBOX_S3_DEADLINE_MS=8000

hb_ok init >/dev/null
make_small_tree "$T/src" 50 3
randfile "$T/src/big.bin" $((3 << 20)) big
id=$(snapshot_create "$T/src")
hb_ok check --read-data >/dev/null

# s3rver keeps each object as KEY._S3rver_object
stored() { echo "$T/s3/data/hbtest/repo/$1._S3rver_object"; }
# flip FILE: one byte in the middle of FILE changed, the original kept as FILE.orig
flip() {
	cp "$1" "$1.orig"
	python3 -c 'import os, sys
p = sys.argv[1]; n = os.path.getsize(p) // 2
with open(p, "r+b") as f:
    f.seek(n); b = f.read(1); f.seek(n); f.write(bytes([b[0] ^ 0x20]))' "$1"
}
unflip() { mv "$1.orig" "$1"; }

log "a pack damaged in the bucket, cached whole here by its writer"
pack=$(ls -S "$T"/s3/data/hbtest/repo/packs/*/*._S3rver_object | head -n 1)
packid=$(basename "$pack" ._S3rver_object)
flip "$pack"
hb_try check --read-data
[ "$HB_RC" -eq 1 ] || bad "check --read-data with a damaged pack in the bucket exited $HB_RC: $(head -c 500 "$T/out")"
grep -q "pack $packid" "$T/err" || bad "check --read-data does not name the damaged pack $packid: $(head -c 800 "$T/err")"
# read twice with the same mismatch: the bucket's copy, not the network
grep -q "pack $packid.*stored in the bucket is damaged" "$T/err" ||
	bad "check --read-data blames the transfer for a pack damaged in the bucket: $(head -c 800 "$T/err")"
# the cache was left as it was: this host still restores from it
restore_and_compare "$id" "$T/src" "restore from the cache beside a damaged bucket" || true
unflip "$pack"

# finds WHAT FILE PATTERN CHECK-ARGS...: with FILE damaged, check fails
# with a line matching PATTERN
finds() {
	local what=$1 file=$2 pattern=$3
	shift 3
	flip "$file"
	hb_try check "$@"
	[ "$HB_RC" -eq 1 ] || bad "check with $what damaged in the bucket exited $HB_RC: $(head -c 500 "$T/out")"
	grep -q -- "$pattern" "$T/err" || bad "check does not report $what damaged in the bucket: $(head -c 800 "$T/err")"
	unflip "$file"
}
log "a manifest damaged in the bucket"
finds "the manifest" "$(stored "snapshots/$id")" "$id"
log "the config damaged in the bucket"
finds "the config" "$(stored config)" "config"

log "all repaired: check passes"
hb_ok check --read-data >/dev/null
finish
