#!/bin/bash
# The local cache of s3:// repositories ($HIBERBOX_HOME/cache/<hash of the
# location and endpoint>) with the real CLI against s3rver: two repositories on one host
# keep their caches (opening one never clears the other's); a cache of the
# earlier shared layout ($HIBERBOX_HOME/cache/index.sqlite) is removed, but
# not while another process has it open; init again after a repository was
# deleted from the bucket is not refused because of what the cache holds.
#
# Skips (77) without node or tests/s3/node_modules (npm ci --prefix tests/s3).
set -euo pipefail
source "$SRCDIR/tests/integration/lib.sh"
source "$SRCDIR/tests/s3/faults.sh"
s3_test_start hbtest
export HIBERBOX_S3_RETRY_BASE_MS=20 HIBERBOX_S3_TIMEOUT_MS=3000 HIBERBOX_S3_CONNECT_TIMEOUT_MS=2000
export HIBERBOX_S3_DEADLINE_MS=8000
A=s3://hbtest/a B=s3://hbtest/b

log "two repositories: opening one leaves the other's cache alone"
HIBERBOX_REPO=$A hb_ok init >/dev/null
HIBERBOX_REPO=$B hb_ok init >/dev/null
make_small_tree "$T/src" 200 5
randfile "$T/src/big.bin" $((3 << 20)) big
dump_tree "$T/src" "$T/src.json"
export HIBERBOX_REPO=$A
first=$(snapshot_create "$T/src" --tag first)
restore_and_compare first "$T/src.json" "restore from a" || true
clear_faults
restore_and_compare first "$T/src.json" "warm restore from a" || true
warm=$(gets)
HIBERBOX_REPO=$B hb_ok snapshot list >/dev/null
clear_faults
restore_and_compare first "$T/src.json" "restore from a after b was opened" || true
after=$(gets)
log "warm restore from a: $warm GET requests; after b was opened: $after"
[ "$after" -le "$warm" ] ||
	bad "opening b evicted a's cache: a warm restore from a took $warm GETs, after b was opened $after"
n=$(find "$HIBERBOX_HOME/cache" -mindepth 2 -maxdepth 2 -name index.sqlite | wc -l)
[ "$n" -eq 2 ] || bad "expected one cache directory per repository, found $n index files"

log "a cache of the shared layout: kept while another process has it open, then removed"
old="$HIBERBOX_HOME/cache"
mkdir -p "$old/objects/ab"
echo stale >"$old/objects/ab/0123"
# A process of an earlier version, its index open (WAL, as the cache uses it).
python3 -c '
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
db.commit()
db.execute("SELECT * FROM meta").fetchall()
open(sys.argv[2], "w").close()
time.sleep(60)
' "$old/index.sqlite" "$T/old-ready" &
holder=$!
for _ in $(seq 100); do [ -e "$T/old-ready" ] && break; sleep 0.1; done
[ -e "$T/old-ready" ] || fail "the process holding the old cache did not start"
restore_and_compare first "$T/src.json" "restore beside an old-layout cache in use" || true
[ -e "$old/index.sqlite" ] && [ -e "$old/objects/ab/0123" ] ||
	bad "the old-layout cache was removed while another process had it open"
kill "$holder"
wait "$holder" 2>/dev/null || true
clear_faults
restore_and_compare first "$T/src.json" "restore once the old-layout cache is unused" || true
[ ! -e "$old/index.sqlite" ] && [ ! -e "$old/objects" ] ||
	bad "the unused old-layout cache was left: $(ls -A "$old")"
[ "$(gets)" -le "$warm" ] || bad "removing the old-layout cache cost a's cache: $(gets) GETs"

log "init again where a repository was deleted: the remote decides, not the cache"
HIBERBOX_REPO=$B hb_ok snapshot list >/dev/null
[ -d "$T/s3/data/hbtest/b" ] || fail "no data directory for b in the server"
rm -rf "$T/s3/data/hbtest/b"
HIBERBOX_REPO=$B hb_try init
[ "$HB_RC" -eq 0 ] || bad "init where b was deleted exited $HB_RC: $(head -c 500 "$T/err")"
export HIBERBOX_REPO=$B
restore_and_compare "$(snapshot_create "$T/src")" "$T/src.json" "a snapshot of the new b" || true

log "the endpoint is part of a cache's identity (bucket names are per provider account)"
caches() { find "$HIBERBOX_HOME/cache" -mindepth 2 -maxdepth 2 -name index.sqlite | wc -l; }
n=$(caches)
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL/ hb_ok snapshot list >/dev/null
[ "$(caches)" -eq "$n" ] || bad "a trailing '/' on AWS_ENDPOINT_URL made another cache"
AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL/127.0.0.1/localhost} hb_ok snapshot list >/dev/null
[ "$(caches)" -eq $((n + 1)) ] || bad "another endpoint for the same bucket shares its cache ($(caches) caches)"
finish
