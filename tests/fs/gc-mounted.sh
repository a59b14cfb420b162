#!/bin/bash
# gc beside a live mount.  A mount reuses chunk lists it read earlier (its
# lower snapshot's, and those of its own last commit for files unchanged
# since); if those snapshots are removed and collected meanwhile, a commit
# must never record a snapshot that names chunks that are gone:
#  - its own earlier commit removed + gc: unchanged upper files are chunked
#    again from the upper data, and the commit restores byte for byte;
#  - the mounted snapshot itself: `snapshot rm` refuses while it is mounted
#    (the mount pins it); forced and collected, the commit fails with one
#    clear line and records nothing;
#  - pins of other hosts block rm until stale; a killed mount's pin does not;
#  - a commit's hot list names only chunks of its own files.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
randfile "$T/src/lower.bin" 300000 lower
BASE=$(snapshot_create "$T/src" --tag base) || exit 1
M="$T/mnt"
fs_mount base "$M" --upper "$T/upper"

log "an earlier commit of the mount removed and collected"
randfile "$M/new.bin" 400000 upper-new
A=$(fs_commit "$M") || exit 1
hb_ok snapshot rm "$A"
hb_ok gc >/dev/null
echo later >"$M/later.txt"
C=$(fs_commit "$M") || exit 1
hb_try check --read-data
[ "$HB_RC" = 0 ] || bad "check after a commit over a collected parent: $(cat "$T/out" "$T/err")"
hb_ok snapshot restore "$C" "$T/restored"
cmp -s "$T/restored/new.bin" "$M/new.bin" || bad "new.bin differs in the commit made after gc"
cmp -s "$T/restored/lower.bin" "$T/src/lower.bin" || bad "lower.bin differs in the commit made after gc"
[ "$(cat "$T/restored/later.txt")" = later ] || bad "later.txt missing from the commit made after gc"

log "the mounted snapshot: refused, then forced"
# the list marks it, its JSON says by what
hb_ok snapshot list | grep "^${BASE:0:12} .*\[in use: mounted at $M (pid [0-9]* on " >/dev/null ||
	bad "snapshot list does not mark the mounted snapshot: $(hb_ok snapshot list)"
hb_ok snapshot list --json | python3 -c 'import json,sys
l = json.load(sys.stdin)
use = {s["id"]: s.get("in_use", "") for s in l}
sys.exit(0 if use[sys.argv[1]].startswith("mounted at " + sys.argv[2]) and
         all(not v for k, v in use.items() if k != sys.argv[1]) else 1)' "$BASE" "$M" ||
	bad "snapshot list --json: in_use wrong: $(hb_ok snapshot list --json | grep -c in_use) marked"
expect_error "rm of a mounted snapshot" snapshot rm base &&
	expect_in "$HB_ERR" "is in use: mounted at $M, pid [0-9]+ on host .*end that first" "rm of a mounted snapshot"
expect_error "rm of a mounted snapshot by id prefix" snapshot rm "${BASE:0:8}" || true
hb_ok snapshot show "$BASE" >/dev/null
hb_ok snapshot rm --force base "$C"
hb_ok gc >/dev/null
before=$(list_ids | wc -l)
echo more >"$M/more.txt"
expect_error "commit over collected lower data" commit "$M" &&
	expect_in "$HB_ERR" "no longer in the repository.*not recorded" "commit over collected lower data"
[ "$(list_ids | wc -l)" = "$before" ] || bad "a failed commit recorded a snapshot"
hb_try check
[ "$HB_RC" = 0 ] || bad "check after the refused commit: $(cat "$T/out" "$T/err")"
# the mount still serves what it has: upper files, and says EIO for the rest
[ "$(cat "$M/more.txt")" = more ] || bad "the mount lost an upper file"
cmp -s "$M/new.bin" "$T/restored/new.bin" || bad "the mount lost new.bin"
fs_umount "$M"

log "pins: another host's blocks rm, a stale one or a killed mount's does not"
mkdir -p "$T/src3"
echo three >"$T/src3/f"
S3=$(snapshot_create "$T/src3") || exit 1
pin() { # pin HOST PID AGE_SECONDS
	printf '{"exclusive":false,"host":"%s","pid":%s,"time":%s,"pin":"%s","what":"mounted at /elsewhere"}' \
		"$1" "$2" $(($(date +%s) - $3)) "$S3" >"$HIBERBOX_REPO/pins/$(printf '%032x' $RANDOM)"
}
mkdir -p "$HIBERBOX_REPO/pins"
pin other-host 1 60
expect_error "rm of a snapshot pinned on another host" snapshot rm "$S3" &&
	expect_in "$HB_ERR" "in use: mounted at /elsewhere, pid 1 on host other-host" "pin of another host"
rm -f "$HIBERBOX_REPO"/pins/*
pin other-host 1 7200 # not refreshed for two hours: its holder is gone
fs_mount "$S3" "$T/m4" --upper "$T/u4"
fs_kill "$T/m4" # gone, not only signalled: a pin's holder alive is in use
for _ in $(seq 50); do [ "$(ls "$HIBERBOX_REPO/pins" | wc -l)" -ge 2 ] && break; sleep 0.1; done
hb_try snapshot rm "$S3"
[ "$HB_RC" = 0 ] || bad "rm with only a stale pin and a killed mount's pin: $(cat "$T/err")"
[ -z "$(ls "$HIBERBOX_REPO/pins")" ] || bad "stale pins left behind: $(ls "$HIBERBOX_REPO/pins")"
hb_ok umount "$T/m4"

log "the hot list names only chunks of the snapshot's own files"
mkdir -p "$T/src2"
randfile "$T/src2/gone.bin" 300000 gone
randfile "$T/src2/kept.bin" 300000 kept
S2=$(snapshot_create "$T/src2") || exit 1
fs_mount "$S2" "$T/m2" --upper "$T/u2"
cat "$T/m2/gone.bin" "$T/m2/kept.bin" >/dev/null
rm "$T/m2/gone.bin"
C2=$(fs_commit "$T/m2") || exit 1
fs_umount "$T/m2"
hb_ok snapshot rm "$S2"
hb_ok gc >/dev/null # takes gone.bin's chunks
: >"$HIBERBOX_HOME/fs.log"
fs_mount "$C2" "$T/m3" --upper "$T/u3"
cmp -s "$T/m3/kept.bin" "$T/src2/kept.bin" || bad "kept.bin differs"
fs_umount "$T/m3"
grep -q "hot list: \([0-9]*\) of \1 chunks prefetched (0 failed)" "$HIBERBOX_HOME/fs.log" ||
	bad "hot list of a commit names chunks outside it: $(grep 'hot list' "$HIBERBOX_HOME/fs.log")"
finish
