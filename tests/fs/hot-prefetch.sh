#!/bin/bash
# The hot list on a local repository: a commit records the chunks read first
# on the mount; the next mount of that commit decodes them ahead of access
# (its log says how many, and how many readers then used) and everything
# reads back exactly.  A prefetch that meets a corrupt chunk costs nothing but
# that chunk: its file fails with EIO, every other file reads back exactly.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
M="$T/mnt"
LOG="$HIBERBOX_HOME/fs.log"

# wait_log FROM_LINE PATTERN: the first line after FROM_LINE matching PATTERN
# (a minute at most: a loaded machine can take seconds)
wait_log() {
	local i
	for i in $(seq 600); do
		if [ -f "$LOG" ] && tail -n +"$(( $1 + 1 ))" "$LOG" | grep -m1 -E "$2"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}
log_lines() { [ -f "$LOG" ] && wc -l <"$LOG" || echo 0; }

log "a tree whose victim file sits alone in its own pack"
mkdir -p "$T/c1" "$T/src"
randfile "$T/c1/victim" 700000 victim
find "$HIBERBOX_REPO/packs" -type f 2>/dev/null | sort >"$T/packs-0"
hb_ok snapshot create "$T/c1" >/dev/null
find "$HIBERBOX_REPO/packs" -type f | sort >"$T/packs-1"
victim_pack=$(comm -13 "$T/packs-0" "$T/packs-1" | head -n 1)
[ -n "$victim_pack" ] || fail "no pack for the victim file"
cp "$T/c1/victim" "$T/src/victim"
randfile "$T/src/early" 1500000 early
randfile "$T/src/late" 1500000 late
for i in $(seq 20); do echo "small $i" >"$T/src/small-$i"; done
ID=$(snapshot_create "$T/src") || exit 1

log "a mount of a snapshot made by create has no hot list; its commit records one"
from=$(log_lines)
fs_mount "$ID" "$M" --upper "$T/up1"
cat "$M/early" "$M/victim" >/dev/null || bad "reading the mount failed"
HOT=$(fs_commit "$M") || exit 1
fs_umount "$M"
tail -n +"$((from + 1))" "$LOG" | grep -q "hot list:" && bad "a snapshot without a hot list was prefetched"

log "the next mount prefetches the hot list; readers use it; files read back exactly"
from=$(log_lines)
fs_mount "$HOT" "$M" --upper "$T/up2"
line=$(wait_log "$from" "hot list: [0-9]+ of [0-9]+ chunks prefetched") ||
	fail "the hot list was not prefetched: $(tail -n 5 "$LOG")"
read -r done total failed < <(sed -E 's/.*hot list: ([0-9]+) of ([0-9]+) chunks prefetched \(([0-9]+) failed.*/\1 \2 \3/' <<<"$line")
# early (1.5 MB) and victim (0.7 MB): chunks of 16..256 KiB
[ "$total" -ge 9 ] || bad "hot list of $total chunks for 2.2 MB read"
[ "$done" -eq "$total" ] && [ "$failed" -eq 0 ] || bad "prefetch: $line"
for f in early victim late small-7; do
	cmp -s "$M/$f" "$T/src/$f" || bad "$f differs after the prefetch"
done
fs_umount "$M"
line=$(wait_log "$from" "hot list at unmount") || fail "no prefetch figures at unmount"
used=$(sed -nE 's/.*hot list at unmount: .* ([0-9]+) of them used by readers.*/\1/p' <<<"$line")
[ -n "$used" ] && [ "$used" -gt 0 ] || bad "no reader used a prefetched chunk: $(tail -n 5 "$LOG")"

log "a mount that reads nothing passes its hot list on to its commit"
from=$(log_lines)
fs_mount "$HOT" "$M" --upper "$T/up4"
wait_log "$from" "hot list: [0-9]+ of [0-9]+ chunks prefetched" >/dev/null || fail "no prefetch"
IDLE=$(fs_commit "$M") || exit 1
fs_umount "$M"
from=$(log_lines)
fs_mount "$IDLE" "$M" --upper "$T/up5"
line=$(wait_log "$from" "hot list: [0-9]+ of [0-9]+ chunks prefetched") ||
	bad "the commit of an idle mount lost the hot list"
grep -q "of $total chunks" <<<"$line" || bad "hot list changed through an idle mount: $line (was $total)"
fs_umount "$M"

log "a session reading other files: its chunks lead the next hot list, the given ones follow"
from=$(log_lines)
fs_mount "$HOT" "$M" --upper "$T/up6"
cmp -s "$M/late" "$T/src/late" || bad "late differs"
MIX=$(fs_commit "$M") || exit 1
fs_umount "$M"
from=$(log_lines)
fs_mount "$MIX" "$M" --upper "$T/up7"
line=$(wait_log "$from" "hot list: [0-9]+ of [0-9]+ chunks prefetched") ||
	fail "the merged hot list was not prefetched: $(tail -n 5 "$LOG")"
mixed=$(sed -E 's/.*hot list: [0-9]+ of ([0-9]+) chunks prefetched.*/\1/' <<<"$line")
# late (1.5 MB) adds at least 5 chunks of at most 256 KiB to early's and victim's
[ "$mixed" -ge $((total + 5)) ] || bad "hot list of $mixed chunks after reading late: the given $total were not kept"
for f in early victim late; do
	cmp -s "$M/$f" "$T/src/$f" || bad "$f differs with the merged hot list"
done
fs_umount "$M"

log "a corrupt chunk in the hot list: EIO for its file only"
size=$(stat -c %s "$victim_pack")
printf 'garbage!' | dd of="$victim_pack" bs=1 seek=$((size / 3)) conv=notrunc status=none
from=$(log_lines)
fs_mount "$HOT" "$M" --upper "$T/up3"
line=$(wait_log "$from" "hot list: [0-9]+ of [0-9]+ chunks prefetched") ||
	fail "the prefetch did not finish: $(tail -n 5 "$LOG")"
grep -qE "\(0 failed\)" <<<"$line" && bad "the prefetch did not notice the corrupt chunk: $line"
if cat "$M/victim" >/dev/null 2>"$T/cat.err"; then
	bad "reading the corrupt file succeeded"
else
	grep -q "Input/output error" "$T/cat.err" || bad "corrupt chunk: $(cat "$T/cat.err")"
fi
for f in early late small-3; do
	cmp -s "$M/$f" "$T/src/$f" || bad "$f differs next to a corrupt prefetched chunk"
done
fs_umount "$M"

finish
