#!/bin/bash
# The real CLI on an s3:// repository, against s3rver behind the verifying,
# fault-injecting proxy (tests/s3/server.js): init refused in a prefix that
# holds objects but no repository, round trip, 503 bursts and
# resets, corrupted bodies, bad credentials, a missing bucket, an unreachable
# endpoint, and the server killed in the middle of a snapshot.
#
# Skips (77) without node or tests/s3/node_modules (npm ci --prefix tests/s3).
set -euo pipefail
source "$SRCDIR/tests/integration/lib.sh"
source "$SRCDIR/tests/s3/faults.sh"
s3_test_start hbtest
export HIBERBOX_REPO=s3://hbtest/repo
# Short timeouts so that failures are quick; retries stay on.
export HIBERBOX_S3_RETRY_BASE_MS=20 HIBERBOX_S3_TIMEOUT_MS=3000 HIBERBOX_S3_CONNECT_TIMEOUT_MS=2000
export HIBERBOX_S3_DEADLINE_MS=8000

log "init into a prefix that holds objects but no repository is refused"
# put_object KEY FILE: an object written by someone else (curl signs it)
put_object() {
	curl -fsS --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H "x-amz-content-sha256: $(sha256sum "$2" | cut -d' ' -f1)" -T "$2" "$AWS_ENDPOINT_URL/$1" ||
		fail "cannot put $1 into the test server"
}
# get_object KEY FILE: an object as the bucket holds it
get_object() {
	curl -fsS --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H "x-amz-content-sha256: $(sha256sum </dev/null | cut -d' ' -f1)" -o "$2" "$AWS_ENDPOINT_URL/$1" ||
		fail "cannot get $1 from the test server"
}
echo "somebody's data" >"$T/foreign.txt"
put_object hbtest/foreign/data.txt "$T/foreign.txt"
objects() { (cd "$T/s3/data/hbtest" && find "$1" | sort | tr '\n' ' '); }
before=$(objects foreign)
HIBERBOX_REPO=s3://hbtest/foreign expect_error "init into a prefix with objects" init &&
	expect_in "$HB_ERR" "^hiberbox: s3://hbtest/foreign is not empty and holds no repository" \
		"init into a prefix with objects" || true
[ "$(objects foreign)" = "$before" ] || bad "a refused init wrote into the prefix: $(objects foreign)"
# a prefix only shares the start of its name with that one: still empty
HIBERBOX_REPO=s3://hbtest/foreig hb_ok init >/dev/null

log "init and a first snapshot"
hb_ok init >/dev/null
make_small_tree "$T/src" 400 3
randfile "$T/src/big.bin" $((6 << 20)) big
dump_tree "$T/src" "$T/src.json"
first=$(snapshot_create "$T/src" --tag first)
restore_and_compare first "$T/src.json" "restore from S3" || true
hb_ok check >/dev/null

log "ls and cat from the bucket with an empty cache (through 503s and resets)"
fault slowdown 2 GET
fault reset 1 GET packs/
HIBERBOX_HOME="$T/fresh-home" hb snapshot cat first big.bin >"$T/big.out" 2>"$T/err" ||
	bad "cat from S3 failed: $(head -c 300 "$T/err")"
cmp -s "$T/big.out" "$T/src/big.bin" || bad "cat from S3 gave other bytes than big.bin"
clear_faults
HIBERBOX_HOME="$T/fresh-home2" hb snapshot ls first -R >"$T/ls.out" 2>"$T/err" || bad "ls from S3 failed: $(head -c 300 "$T/err")"
[ "$(grep -c '' "$T/ls.out")" -eq "$(cd "$T/src" && find . -mindepth 1 | wc -l)" ] ||
	bad "ls -R from S3 lists $(grep -c '' "$T/ls.out") entries"

HIBERBOX_HOME="$T/fresh-home3" hb snapshot restore first "$T/part" --path big.bin >/dev/null 2>"$T/err" ||
	bad "restore --path from S3 failed: $(head -c 300 "$T/err")"
[ "$(ls -A "$T/part")" = big.bin ] && cmp -s "$T/part/big.bin" "$T/src/big.bin" ||
	bad "restore --path big.bin from S3: $(ls -A "$T/part" | head -5)"

log "503 SlowDown bursts and resets are retried"
mkdir -p "$T/src2" && cp -a "$T/src/." "$T/src2/" && randfile "$T/src2/more.bin" $((2 << 20)) more
dump_tree "$T/src2" "$T/src2.json"
# The first request may be a PUT (the lock: the config comes from the
# cache) and then meets both kinds: 4 + 2 failures, within its 7 attempts.
fault slowdown 4
fault reset 2 PUT
second=$(snapshot_create "$T/src2" --tag second)
[ "$(injected slowdown)" -eq 4 ] || bad "expected 4 SlowDown answers, proxy served $(injected slowdown)"
[ "$(injected reset)" -eq 2 ] || bad "expected 2 resets, proxy did $(injected reset)"
# (At most 6 in a row on one request: it has 7 attempts.)
fault slowdown 2 GET
fault reset 2 GET
fault truncate 1 GET
fault reset 3 GET packs/
restore_and_compare second "$T/src2.json" "restore through 503s, resets and truncated bodies" || true
clear_faults

log "corrupted chunk reads: never silent"
fault corrupt 1000 GET packs/
dst="$T/corrupt-dst"
hb_try snapshot restore second "$dst"
if [ "$HB_RC" -eq 0 ]; then
	compare_trees "$T/src2.json" "$dst" >"$T/d" || bad "restore with corrupted bodies succeeded with wrong data: $(head -5 "$T/d")"
else
	[ "$HB_RC" -lt 124 ] || bad "restore with corrupted bodies crashed or hung (exit $HB_RC)"
	log "corrupt bodies -> exit $HB_RC: $(head -n 1 "$T/err")"
fi
clear_faults
rm -rf "$dst"
restore_and_compare second "$T/src2.json" "restore after the corruption stopped" || true

log "a corrupt index file among those fetched in parallel: one clear line, then recovery"
# first and second wrote an index file each: a cold read fetches both at once
rm -rf "$HIBERBOX_HOME/cache" "$T/idx-dst"
fault corrupt 1000 GET index/
expect_error "restore with every index body corrupted" snapshot restore second "$T/idx-dst" &&
	expect_in "$HB_ERR" "index" "corrupt index"
[ "$(injected corrupt)" -ge 2 ] || bad "the corrupt index fault was injected $(injected corrupt) times"
clear_faults
rm -rf "$HIBERBOX_HOME/cache" "$T/idx-dst"
restore_and_compare second "$T/src2.json" "restore after the index corruption stopped" || true

log "bad credentials, missing bucket"
AWS_SECRET_ACCESS_KEY=wrong expect_error "wrong secret" snapshot list &&
	expect_in "$HB_ERR" "access denied to bucket hbtest: check AWS_ACCESS_KEY_ID" "wrong secret"
HIBERBOX_REPO=s3://no-such-bucket/x expect_error "missing bucket" snapshot list &&
	expect_in "$HB_ERR" "bucket no-such-bucket does not exist" "missing bucket"

log "keys, region and endpoint from the AWS CLI's files (aws configure), the environment empty"
printf '[ci]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
	"$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$T/aws-credentials"
printf '[profile ci]\nregion = %s\nendpoint_url = %s\n' "$AWS_REGION" "$AWS_ENDPOINT_URL" >"$T/aws-config"
# from_files PROFILE CMD...: CMD with the AWS_* keys, region and endpoint set
# empty (which counts as unset, as for the AWS CLI) and the files above
from_files() {
	local AWS_ACCESS_KEY_ID='' AWS_SECRET_ACCESS_KEY='' AWS_REGION='' AWS_ENDPOINT_URL='' \
		AWS_SHARED_CREDENTIALS_FILE="$T/aws-credentials" AWS_CONFIG_FILE="$T/aws-config" AWS_PROFILE=$1
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ENDPOINT_URL \
		AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE AWS_PROFILE
	shift
	"$@"
}
from_files ci hb_try snapshot list
[ "$HB_RC" -eq 0 ] && grep -q second "$T/out" ||
	bad "snapshot list with profile ci of the AWS files exited $HB_RC: $(head -c 500 "$T/err")"
from_files nope expect_error "a profile in neither file" snapshot list &&
	expect_in "$HB_ERR" "profile \"nope\", which is not in $T/aws-credentials or $T/aws-config" \
		"a profile in neither file" || true
printf '[ci]\naws_access_key_id = %s\naws_secret_access_key = wrong\n' "$AWS_ACCESS_KEY_ID" >"$T/aws-credentials"
from_files ci expect_error "a wrong secret in the credentials file" snapshot list &&
	expect_in "$HB_ERR" "check aws_access_key_id and aws_secret_access_key in profile \"ci\" \($T/aws-credentials, $T/aws-config\)" \
		"a wrong secret in the credentials file" || true
printf '[ci]\naws_access_key_id = %s\n%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$T/aws-credentials"
from_files ci expect_error "a malformed credentials file" snapshot list &&
	expect_in "$HB_ERR" "$T/aws-credentials line 3: " "a malformed credentials file" || true
grep -qF -- "$AWS_SECRET_ACCESS_KEY" "$T/err" && bad "the malformed line's secret was printed: $(cat "$T/err")"

log "a pack cut short in the bucket under the name the next snapshot writes is replaced"
# A local twin with the same config names the pack (one chunk, one pack); the
# bucket gets that config and the first half of the pack, as a sync tool
# stopped midway would leave them.
mkdir -p "$T/one"
randfile "$T/one/only.bin" 20000 s3trunc
dump_tree "$T/one" "$T/one.json"
HIBERBOX_REPO="$T/cut-twin" hb_ok init >/dev/null
HIBERBOX_REPO="$T/cut-twin" hb_ok snapshot create "$T/one" >/dev/null
twin_pack=$(cd "$T/cut-twin" && find packs -type f)
head -c 10000 "$T/cut-twin/$twin_pack" >"$T/cut-half"
put_object hbtest/cut/config "$T/cut-twin/config"
put_object "hbtest/cut/$twin_pack" "$T/cut-half"
one=$(HIBERBOX_REPO=s3://hbtest/cut snapshot_create "$T/one")
HIBERBOX_REPO=s3://hbtest/cut HIBERBOX_HOME="$T/cut-home" restore_and_compare "$one" "$T/one.json" \
	"a pack cut short in the bucket before snapshot create (empty cache)" || true
HIBERBOX_REPO=s3://hbtest/cut hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "a pack cut short in the bucket before snapshot create: check --read-data exited $HB_RC: $(head -c 500 "$T/err")"

log "a manifest cut short in the bucket under the name the next snapshot writes is replaced"
# Inline files only (no pack, no index), --no-parent and the wall clock
# stopped (fixed-clock-preload.so): two creates of the same tree write the
# same manifest.  The first one's put left it whole in this host's cache;
# the bucket then gets its first half, as a sync tool stopped midway would
# leave it.  The second create must look in the bucket, not the cache.
: "${FIXED_CLOCK_PRELOAD:?FIXED_CLOCK_PRELOAD must point at fixed-clock-preload.so}"
FROZEN_CLOCK_SEC=$(date +%s) # frozen (lib.sh) stops the clock there
mkdir -p "$T/tiny"
echo "a file small enough to be kept in its manifest" >"$T/tiny/small"
dump_tree "$T/tiny" "$T/tiny.json"
HIBERBOX_REPO=s3://hbtest/mcut hb_ok init >/dev/null
m1=$(HIBERBOX_REPO=s3://hbtest/mcut frozen snapshot_create "$T/tiny" --no-parent)
get_object "hbtest/mcut/snapshots/$m1" "$T/m-whole"
head -c $(($(stat -c %s "$T/m-whole") / 2)) "$T/m-whole" >"$T/m-half"
put_object "hbtest/mcut/snapshots/$m1" "$T/m-half"
m2=$(HIBERBOX_REPO=s3://hbtest/mcut frozen snapshot_create "$T/tiny" --no-parent)
[ "$m2" = "$m1" ] || fail "setup: the second create recorded $m2, not the first's $m1"
get_object "hbtest/mcut/snapshots/$m1" "$T/m-after"
cmp -s "$T/m-after" "$T/m-whole" ||
	bad "a manifest cut short in the bucket was kept by snapshot create ($(stat -c %s "$T/m-after") of $(stat -c %s "$T/m-whole") bytes)"
HIBERBOX_REPO=s3://hbtest/mcut HIBERBOX_HOME="$T/mcut-home" restore_and_compare "$m1" "$T/tiny.json" \
	"a manifest cut short in the bucket before snapshot create (empty cache)" || true
HIBERBOX_REPO=s3://hbtest/mcut hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "a manifest cut short in the bucket before snapshot create: check --read-data exited $HB_RC: $(head -c 500 "$T/err")"

log "libraries loaded on first use: a broken one is one clear line, and only where used"
mkdir -p "$T/badlib" "$T/badsqlite"
echo "not a library" >"$T/badsqlite/libsqlite3.so.0"
for so in libsqlite3.so.0 libcrypto.so.3 libcurl.so.4; do echo "not a library" >"$T/badlib/$so"; done
rm -rf "$T/bad-home"
LD_LIBRARY_PATH="$T/badsqlite" HIBERBOX_HOME="$T/bad-home" expect_error "no loadable libsqlite3" snapshot list &&
	expect_in "$HB_ERR" "index.sqlite: open: .*libsqlite3.so.0" "a broken libsqlite3 is named" || true
LD_LIBRARY_PATH="$T/badlib" HIBERBOX_HOME="$T/bad-home" expect_error "no loadable libcurl" snapshot list &&
	expect_in "$HB_ERR" "S3 needs libcurl: .*libcurl.so.4" "a broken libcurl is named" || true
# a local repository never loads them: the same environment works
mkdir -p "$T/local-src" && echo x >"$T/local-src/f"
LD_LIBRARY_PATH="$T/badlib" HIBERBOX_REPO="$T/local-repo" hb init >/dev/null 2>"$T/err" &&
	LD_LIBRARY_PATH="$T/badlib" HIBERBOX_REPO="$T/local-repo" hb snapshot create "$T/local-src" >/dev/null 2>>"$T/err" &&
	LD_LIBRARY_PATH="$T/badlib" HIBERBOX_REPO="$T/local-repo" hb snapshot list >/dev/null 2>>"$T/err" ||
	bad "a local repository needed a lazily loaded library: $(head -c 300 "$T/err")"

log "unreachable endpoint: an error in bounded time"
start=$(date +%s)
AWS_ENDPOINT_URL=http://127.0.0.1:9 HIBERBOX_S3_DEADLINE_MS=2000 expect_error "unreachable" snapshot list &&
	expect_in "$HB_ERR" "connect" "unreachable endpoint"
[ $(($(date +%s) - start)) -le 15 ] || bad "unreachable endpoint took $(($(date +%s) - start)) s"

log "server killed in the middle of a snapshot"
mkdir -p "$T/src3" && cp -a "$T/src2/." "$T/src3/"
for i in 1 2 3 4 5 6; do randfile "$T/src3/late$i.bin" $((3 << 20)) "late$i"; done
dump_tree "$T/src3" "$T/src3.json"
port=$(cat "$T/s3/port")
# Hold every pack upload for 1.5 s so that the kill lands mid-snapshot
# however fast the machine is.
fault delay 1000 PUT packs/ 1500
hb snapshot create "$T/src3" --tag third >"$T/out3" 2>"$T/err3" &
hbpid=$!
sleep 1.5
kill -KILL "$(cat "$T/s3/pid")"
start=$(date +%s)
rc=0
wait "$hbpid" || rc=$?
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] || bad "snapshot create succeeded although the server died"
[ "$rc" -lt 124 ] || bad "snapshot create with a dead server crashed or hung (exit $rc)"
[ "$took" -le 30 ] || bad "snapshot create took $took s to notice the dead server"
[ "$(wc -l <"$T/err3")" -eq 1 ] && grep -q '^hiberbox: ' "$T/err3" ||
	bad "dead server: expected one 'hiberbox: ' line, got: $(head -c 800 "$T/err3")"
log "dead server -> exit $rc after $took s: $(head -n 1 "$T/err3")"

# Back on the same port with the same data: earlier snapshots intact, retry works.
"$S3DIR/run-s3rver.sh" stop "$T/s3" >/dev/null 2>&1 || true
node --openssl-legacy-provider "$S3DIR/server.js" --dir "$T/s3/data" --port "$port" --bucket hbtest \
	>"$T/s3/ready" 2>>"$T/s3/server.log" &
echo $! >"$T/s3/pid"
for _ in $(seq 600); do grep -q READY "$T/s3/ready" && break; sleep 0.1; done # (a minute at most)
grep -q READY "$T/s3/ready" || fail "S3 test server did not come back"
restore_and_compare first "$T/src.json" "first snapshot after the crash" || true
restore_and_compare second "$T/src2.json" "second snapshot after the crash" || true
hb_ok check >/dev/null
dump_tree "$T/src3" "$T/src3.json" # the killed run read files: atimes moved
third=$(snapshot_create "$T/src3" --tag third)
restore_and_compare third "$T/src3.json" "snapshot retried after the server came back" || true
# prune on the bucket: of src3's untagged snapshots only the newest stays
echo four >"$T/src3/four" && fourth=$(snapshot_create "$T/src3")
echo five >"$T/src3/five" && fifth=$(snapshot_create "$T/src3")
hb_ok snapshot prune --keep-last 0 --source "$T/src3" >"$T/out"
grep -q "^removed ${fourth:0:12}" "$T/out" && grep -q "^1 removed" "$T/out" || bad "prune on S3: $(cat "$T/out")"
ids=$(list_ids)
grep -q "$fourth" <<<"$ids" && bad "prune on S3 left $fourth listed"
grep -q "$fifth" <<<"$ids" && grep -q "$third" <<<"$ids" || bad "prune on S3 removed the newest or the tagged"
hb_ok gc >/dev/null
hb_ok check >/dev/null
restore_and_compare first "$T/src.json" "first snapshot after gc" || true
finish
