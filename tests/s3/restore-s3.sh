#!/bin/bash
# snapshot restore from S3 by pack (snapshot/restore-fetch.c), against s3rver
# behind the fault-injecting proxy: the exact tree (every kind of entry,
# large files across packs, sparse files, hard links); corrupt and truncated
# pack bodies (a clear error, and no file left that looks restored but is
# not); the server killed mid-restore (an error in bounded time); and a
# local cache that already holds some of the chunks (used, and a damaged
# cache file is not trusted).
#
# Skips (77) without node or tests/s3/node_modules (npm ci --prefix tests/s3).
set -euo pipefail
source "$SRCDIR/tests/integration/lib.sh"
source "$SRCDIR/tests/s3/faults.sh"
s3_test_start hbrestore
export HIBERBOX_REPO=s3://hbrestore/repo
export HIBERBOX_S3_RETRY_BASE_MS=20 HIBERBOX_S3_TIMEOUT_MS=2000 HIBERBOX_S3_CONNECT_TIMEOUT_MS=1000
export HIBERBOX_S3_DEADLINE_MS=5000
fresh_home() { rm -rf "$HIBERBOX_HOME"; mkdir -p "$HIBERBOX_HOME"; }
# The second tree is a copy (cp -a): reading it to snapshot it may move
# atimes (relatime: its ctimes are new), so they are not compared.
restore_and_compare_src2() { # ID DESC
	local dst="$T/src2-restore" diffs rc=0
	rm -rf "$dst"
	hb_try snapshot restore "$1" "$dst"
	if [ "$HB_RC" -ne 0 ]; then
		bad "$2: restore exited $HB_RC: $(head -c 1000 "$T/err")"
		return 1
	fi
	diffs=$(compare_trees "$T/src2.json" "$dst" --no-atime) || rc=$?
	rm -rf "$dst"
	[ "$rc" -eq 0 ] || bad "$2: restored tree differs:"$'\n'"$diffs"
}

# Every regular file left in DST must be the source's file, byte for byte:
# a failed restore may stop anywhere, but never leave a wrong or short file.
no_invalid_files() { # SRC DST DESC
	local src=$1 dst=$2 desc=$3 f n=0
	[ -d "$dst" ] || return 0
	while IFS= read -r -d '' f; do
		n=$((n + 1))
		cmp -s "$src/$f" "$dst/$f" || bad "$desc: '$f' is left in the target but differs from the source"
	done < <(cd "$dst" && find . -type f -print0)
	log "$desc: $n complete file(s) left in the target, all exact"
}

log "a tree with every kind of entry, and large files over several packs"
hb_ok init >/dev/null
make_tree "$T/src" 1500 24
randfile "$T/src/big/spans-packs.bin" $((13 << 20)) spans
cp "$T/src/big/spans-packs.bin" "$T/src/big/same-content.bin" # every chunk used twice
dump_tree "$T/src" "$T/src.json"
first=$(snapshot_create "$T/src" --tag first)

log "cold restore by pack: the exact tree"
fresh_home
clear_faults
restore_and_compare first "$T/src.json" "restore by pack from S3" || true
cold_gets=$(gets)
log "cold restore: $cold_gets GET requests"
[ -d "$HIBERBOX_HOME/cache" ] || bad "the restore did not fill the local cache"

log "a restore pins its snapshot: rm refuses it meanwhile, the pin goes with the restore"
fresh_home
clear_faults
fault delay 1 GET /packs/ 3000
hb snapshot restore first "$T/pinned" >/dev/null 2>"$T/pinned.err" &
restoring=$!
for _ in $(seq 100); do find "$T/s3" -path '*pins*' -type f | grep -q . && break; sleep 0.1; done
expect_error "rm of a snapshot being restored" snapshot rm first &&
	expect_in "$HB_ERR" "in use: restore into .*pinned" "rm of a snapshot being restored"
wait "$restoring" || bad "the restore beside a refused rm failed: $(cat "$T/pinned.err")"
[ -z "$(find "$T/s3" -path '*pins*' -type f)" ] ||
	bad "a restore left its pin in the bucket: $(find "$T/s3" -path '*pins*' -type f)"
clear_faults

log "a pack body corrupted once: read again, the tree is exact"
fresh_home
fault corrupt 1 GET packs/
restore_and_compare first "$T/src.json" "restore with one corrupted range" || true
clear_faults

log "pack bodies always corrupted: a clear error, no file looks restored"
fresh_home
dst="$T/corrupt-dst"
fault corrupt 1000 GET packs/
if expect_error "corrupt packs" snapshot restore first "$dst"; then
	expect_in "$HB_ERR" "restoring '.*'.*pack [0-9a-f]{32}.*chunk [0-9a-f]{32}" "corrupt packs"
fi
no_invalid_files "$T/src" "$dst" "corrupt packs"
clear_faults
rm -rf "$dst"

log "pack bodies always truncated: a clear error, no file looks restored"
fresh_home
dst="$T/truncated-dst"
fault truncate 1000 GET packs/
if expect_error "truncated packs" snapshot restore first "$dst"; then
	expect_in "$HB_ERR" "pack [0-9a-f]{32}" "truncated packs"
fi
no_invalid_files "$T/src" "$dst" "truncated packs"
clear_faults
rm -rf "$dst"

log "a cache that holds some of the chunks: used, and the rest fetched"
# A chunk-by-chunk restore of the first snapshot leaves its chunks in the
# cache one range each (as a lazy mount does); the second snapshot adds new
# files, in new packs.
mkdir -p "$T/src2" && cp -a "$T/src/." "$T/src2/"
randfile "$T/src2/big/new.bin" $((5 << 20)) new2
python3 "$TREEGEN" small "$T/src2/new-small" 300 7
dump_tree "$T/src2" "$T/src2.json"
second=$(snapshot_create "$T/src2" --tag second)
fresh_home
HIBERBOX_RESTORE_BY_PACK=0 hb_ok snapshot restore first "$T/chunkwise"
rm -rf "$T/chunkwise"
clear_faults
restore_and_compare_src2 second "restore over a cache holding the first snapshot's chunks" || true
warm_gets=$(gets)
log "restore over a partly filled cache: $warm_gets GET requests (cold, smaller snapshot: $cold_gets)"
[ "$warm_gets" -lt "$cold_gets" ] ||
	bad "the cached chunks were fetched again: $warm_gets GET requests, a cold restore of less took $cold_gets"

log "a damaged cache file is not trusted"
n=0
while IFS= read -r -d '' f; do
	printf '\xff' | dd of="$f" bs=1 seek=7 conv=notrunc status=none
	n=$((n + 1))
done < <(find "$HIBERBOX_HOME/cache" -path '*/objects/*' -type f -size +100k -print0)
[ "$n" -gt 0 ] || bad "no cached range to damage"
restore_and_compare_src2 second "restore over $n damaged cache files" || true

log "a pack gone from the bucket: a clear error, no file looks restored"
fresh_home
dst="$T/missing-dst"
pack=$(cd "$T/s3/data/hbrestore/repo/packs" && find . -name '*._S3rver_object' | head -n 1)
[ -n "$pack" ] || fail "no pack object in the server's data directory"
mkdir -p "$T/pack-aside"
mv "$T/s3/data/hbrestore/repo/packs/${pack%._S3rver_object}"* "$T/pack-aside/"
if expect_error "missing pack" snapshot restore second "$dst"; then
	expect_in "$HB_ERR" "pack [0-9a-f]{32} is missing" "missing pack"
fi
no_invalid_files "$T/src2" "$dst" "missing pack"
mv "$T/pack-aside/"* "$T/s3/data/hbrestore/repo/packs/$(dirname "$pack")/"
rm -rf "$dst"

log "the server killed mid-restore: an error in bounded time, no file looks restored"
fresh_home
dst="$T/killed-dst"
# Hold every pack read so that the kill lands while the restore waits.
fault delay 1000 GET packs/ 1500
hb snapshot restore second "$dst" >"$T/out" 2>"$T/err" &
hbpid=$!
sleep 1
kill -KILL "$(cat "$T/s3/pid")"
start=$(date +%s)
rc=0
wait "$hbpid" || rc=$?
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] || bad "restore succeeded although the server died"
[ "$rc" -lt 124 ] || bad "restore with a dead server crashed or hung (exit $rc)"
[ "$took" -le 30 ] || bad "restore took $took s to notice the dead server (deadline 5 s a request)"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^hiberbox: ' "$T/err" ||
	bad "dead server: expected one 'hiberbox: ' line, got: $(head -c 800 "$T/err")"
log "dead server -> exit $rc after $took s: $(head -n 1 "$T/err")"
no_invalid_files "$T/src2" "$dst" "server killed"
finish
