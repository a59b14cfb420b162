#!/bin/bash
# A manifest, an index file or the config that arrives damaged where S3
# cannot check it (a KMS-encrypted bucket: its ETags are no MD5 of the
# bytes) is cached as it came; the reader that finds it does not decode is
# to drop that copy and fetch again, not to fail on it from then on.
#
# Skips (77) without node or tests/s3/node_modules (npm ci --prefix tests/s3).
set -euo pipefail
source "$SRCDIR/tests/integration/lib.sh"
source "$SRCDIR/tests/s3/faults.sh"
s3_test_start hbtest
export HIBERBOX_REPO=s3://hbtest/repo
export HIBERBOX_S3_RETRY_BASE_MS=20 HIBERBOX_S3_DEADLINE_MS=8000

hb_ok init >/dev/null
make_small_tree "$T/src" 50 3
id=$(snapshot_create "$T/src")

# damaged_once WHAT MATCH [AT]: the next GET of a key containing MATCH
# comes damaged (its middle byte, or byte AT) as from a KMS bucket; a
# restore with an empty cache must succeed, and so must the next one on the
# same cache.
damaged_once() {
	local home="$T/home-${2//\//}"
	clear_faults
	curl -fsS -X POST "$AWS_ENDPOINT_URL/__control/fault?kind=corrupt&count=1&method=GET&match=$2&sse=kms${3:+&at=$3}" >/dev/null
	HIBERBOX_HOME="$home" restore_and_compare "$id" "$T/src" "$1 damaged once on the way" || true
	[ "$(injected corrupt)" -eq 1 ] || bad "$1: the damaged body was served $(injected corrupt) times"
	HIBERBOX_HOME="$home" restore_and_compare "$id" "$T/src" "$1: the next restore on that cache" || true
}
log "a manifest damaged on the way from a KMS bucket"
damaged_once "a manifest" snapshots/
log "an index file damaged on the way from a KMS bucket"
damaged_once "an index file" index/
log "the config damaged on the way from a KMS bucket"
# (its first byte: the middle one is in the secret, which parses as well
# when the flip gives another hex digit)
damaged_once "the config" /config 0
finish
