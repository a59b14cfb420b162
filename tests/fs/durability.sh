#!/bin/bash
# fsync() on the mount makes the change durable as it would be on a local
# filesystem: besides the journal and the data file, the data file's name in
# upper/data (a new file, a copy-up) must be synced, or a crash right after
# the fsync returned loses the file's content (replay finds its data file
# missing).  A power cut cannot be made here, so the fs process is traced:
# the directory fsync must come before the fsync() returns, and only when a
# data file was named since the last one (its cost stays off repeated fsyncs).
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
command -v strace >/dev/null || { echo "SKIP: strace is not installed"; exit 77; }
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
printf 'lower\n' >"$T/src/lower.txt"
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
U="$T/upper"
fs_mount "$ID" "$M" --upper "$U"
PID=$(fs_pid "$M")
[ -n "$PID" ] || fail "no pid for $M"

TRACE="$T/trace"
strace -f -y -qq -e trace=fsync,fdatasync -p "$PID" -o "$TRACE" 2>"$T/strace.err" &
SPID=$!
# strace has attached once a traced fsync shows up: poke the journal
for _ in $(seq 100); do
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$M"
	grep -q journal "$TRACE" 2>/dev/null && break
	sleep 0.1
done
grep -q journal "$TRACE" || fail "strace did not attach to the fs process ($(cat "$T/strace.err"))"

# do_fsync FILE [DATA]: writes DATA (if any) and fsyncs FILE; prints how
# many fsyncs of upper/data the fs made meanwhile.
do_fsync() {
	local before after
	before=$(grep -c "<$U/data>" "$TRACE")
	python3 - "$@" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
if len(sys.argv) > 2:
    os.write(fd, sys.argv[2].encode())
os.fsync(fd)
os.close(fd)
PY
	after=$(grep -c "<$U/data>" "$TRACE")
	echo $((after - before))
}

log "a new file's fsync syncs its name in upper/data"
[ "$(do_fsync "$M/new.txt" hello)" -ge 1 ] || bad "fsync of a new file did not sync upper/data"
grep -q "fsync(.*<$U>)" "$TRACE" || bad "the upper directory's own names were never synced"

log "a second fsync with no new name costs no directory fsync"
[ "$(do_fsync "$M/new.txt" more)" -eq 0 ] || bad "fsync of an old file synced upper/data again"

log "a copy-up's fsync syncs the renamed data file's name"
[ "$(do_fsync "$M/lower.txt" changed)" -ge 1 ] || bad "fsync after a copy-up did not sync upper/data"

log "fsync of a directory after a create syncs the new name too"
: >"$M/empty.txt"
n=$(grep -c "<$U/data>" "$TRACE")
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$M"
[ "$(grep -c "<$U/data>" "$TRACE")" -gt "$n" ] || bad "fsync of the directory did not sync upper/data"

kill "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
fs_umount "$M"
log "the synced files are there after a remount"
fs_mount "$ID" "$M" --upper "$U"
[ "$(cat "$M/new.txt")" = hellomore ] || bad "new.txt after remount: $(cat "$M/new.txt")"
[ "$(cat "$M/lower.txt")" = "$(printf "lower\nchanged")" ] || bad "lower.txt after remount: $(cat "$M/lower.txt")"
fs_umount "$M"
finish
