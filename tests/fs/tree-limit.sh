#!/bin/bash
# --upper-limit bounds the whole tree a mount shows, as a disk of that size
# would: the lower snapshot's files (hard links once) plus the upper's data
# files and journal.  So what a commit moves into the next snapshot still
# counts when that snapshot is mounted with the same limit (a sandbox's
# sleep and wake), a copy-up or a replacement of a lower file takes no more
# room, deleting a lower file gives its room back, the use is the same after
# a remount and a SIGKILL, and a snapshot already over the limit mounts
# (reads work, growth is ENOSPC, deletes free).  `mounts` shows the use.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src/d"
randfile "$T/src/big" 2000000 big
randfile "$T/src/hl1" 1000000 hl
ln "$T/src/hl1" "$T/src/hl2"
printf 'lower a\n' >"$T/src/a.txt"
printf 'small\n' >"$T/src/d/s"
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
LIMIT=$((6 << 20))
# what the lower counts: each file's size rounded up to 4 KiB, hl1/hl2 once
LOWER=$((2002944 + 1003520 + 4096 + 4096))

# used_of MOUNTPOINT: what counts against the limit, from `mounts --json`
used_of() { fs_mount_field "$1" used; }
journal_bytes() { stat -c %s "$1/journal"; }
# near A B SLACK: |A - B| <= SLACK
near() { [ "$1" -le $(($2 + $3)) ] && [ "$1" -ge $(($2 - $3)) ]; }

log "the lower snapshot counts at mount, hard links once"
fs_mount "$ID" "$M" --upper "$T/u1" --upper-limit 6M
used=$(used_of "$M")
[ "$used" -eq $((LOWER + $(journal_bytes "$T/u1"))) ] ||
	bad "a fresh mount uses $used bytes, not the lower's $LOWER (+ journal)"
read -r total dfused avail < <(df_of "$M")
[ "$total" -eq "$LIMIT" ] || bad "statfs total $total, not the limit $LIMIT"
near "$dfused" "$LOWER" 8192 || bad "statfs shows $dfused used, the lower is $LOWER"
out=$(hb_ok mounts) || exit 1
grep -q "disk 2.9 MiB of 6.0 MiB" <<<"$out" || bad "mounts does not show the use: $out"

log "a copy-up or a replacement of a lower file takes no more room"
before=$(used_of "$M")
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"OVER", 0)' "$M/big" || bad "overwriting lower big in place"
printf 'OVER' | dd of="$T/src/big" conv=notrunc 2>/dev/null
after=$(used_of "$M")
near "$after" "$before" 8192 || bad "a copy-up of big moved the use $before -> $after"
randfile "$T/hl-new" 1000000 hlnew
cp "$T/hl-new" "$M/hl1" || bad "replacing hl1's content"
after2=$(used_of "$M")
near "$after2" "$after" 8192 || bad "rewriting hard-linked hl1 moved the use $after -> $after2"
cmp -s "$T/hl-new" "$M/hl2" || bad "hl2 is not hl1's new content"
cmp -s "$T/src/big" "$M/big" || bad "big after its copy-up"

log "fill to the limit, commit"
dd if=/dev/zero of="$M/fill" bs=64k count=100 2>"$T/dd.err" && fail "6.4 MB more fit in a 6 MiB tree"
grep -q "No space left" "$T/dd.err" || bad "dd at the limit: $(cat "$T/dd.err")"
fill=$(stat -c %s "$M/fill")
[ "$fill" -gt $((LIMIT - LOWER - 200000)) ] || bad "only $fill bytes of fill went in"
used=$(used_of "$M")
[ "$used" -le "$LIMIT" ] && [ "$used" -gt $((LIMIT - 65536)) ] || bad "a full tree uses $used of $LIMIT"
C=$(fs_commit "$M") || exit 1
fs_umount "$M"

log "the commit mounted with the same limit is full: growth is ENOSPC"
fs_mount "$C" "$M" --upper "$T/u2" --upper-limit 6M
used=$(used_of "$M")
[ "$used" -gt $((LIMIT - 65536)) ] || bad "the committed tree uses $used of $LIMIT after a remount"
read -r total dfused avail < <(df_of "$M")
[ "$avail" -lt 65536 ] || bad "statfs shows $avail bytes free in a full tree"
dd if=/dev/zero of="$M/more" bs=64k count=16 2>"$T/dd.err" && bad "1 MiB more went into the full tree"
grep -q "No space left" "$T/dd.err" || bad "dd in the full tree: $(cat "$T/dd.err")"
rm -f "$M/more"
r=$(errno_of 'os.truncate(p, 4 << 20)' "$M/big")
[ "$r" = ENOSPC ] || bad "truncating lower big up by 2 MB in a full tree: $r"
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"FULL", 100)' "$M/big" || bad "overwriting lower big in place in a full tree"
printf 'FULL' | dd of="$T/src/big" bs=1 seek=100 conv=notrunc 2>/dev/null
cmp -s "$T/src/big" "$M/big" || bad "big after its copy-up in a full tree"

log "deleting lower files gives their room back (a hard link's at its last name)"
before=$(used_of "$M")
rm "$M/hl2" || bad "rm hl2"
sleep 0.2
after=$(used_of "$M")
near "$after" "$before" 8192 || bad "rm of one of two names moved the use $before -> $after"
rm "$M/hl1" || bad "rm hl1"
df_wait_avail "$M" 900000 || bad "rm of hl1 and hl2 freed nothing"
rm "$M/fill" || bad "rm fill"
df_wait_avail "$M" $((fill + 900000)) || bad "rm fill freed nothing"
randfile "$T/new" 3000000 new
cp "$T/new" "$M/new" || bad "writing 3 MB after the deletes"
cmp -s "$T/new" "$M/new" || bad "new"

log "the use is the same after a remount and after a SIGKILL"
ln "$M/new" "$M/new-link" || bad "ln new"
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"A", 0)' "$M/a.txt" || bad "overwriting a.txt"
sleep 0.2
before=$(used_of "$M")
fs_umount "$M"
fs_mount "$C" "$M" --upper "$T/u2" --upper-limit 6M
after=$(used_of "$M")
[ "$after" -eq "$before" ] || bad "used $before before a remount, $after after"
charges() { echo $(($(used_of "$M") - $(journal_bytes "$T/u2"))); } # the files'
was=$(charges)
rm "$M/d/s" || bad "rm d/s"
# d/s's charge (4 KiB) goes when the kernel forgets its node, which it tells
# the fs in its own time (FORGET): measured before that, the use is 4 KiB
# more than a remount finds.  Wait for it (a minute at most).
for _ in $(seq 600); do [ "$(charges)" -le $((was - 4096)) ] && break; sleep 0.1; done
before=$(used_of "$M")
fs_kill "$M"
fs_umount "$M"
fs_mount "$C" "$M" --upper "$T/u2" --upper-limit 6M
after=$(used_of "$M")
[ "$after" -eq "$before" ] || bad "used $before before a SIGKILL, $after after the remount"
cmp -s "$T/new" "$M/new-link" || bad "new-link after the SIGKILL"
C2=$(fs_commit "$M") || exit 1
fs_umount "$M"

log "a snapshot over the limit mounts: reads work, growth is ENOSPC, deletes free"
fs_mount "$C2" "$M" --upper "$T/u3" --upper-limit 2M
read -r total dfused avail < <(df_of "$M")
[ "$total" -eq $((2 << 20)) ] && [ "$avail" -eq 0 ] || bad "statfs over the limit: $total $dfused $avail"
cmp -s "$T/src/big" "$M/big" || bad "big over the limit"
cmp -s "$T/new" "$M/new-link" || bad "new-link over the limit"
r=$(errno_of 'fd = os.open(p, os.O_WRONLY | os.O_CREAT); os.write(fd, b"x" * 8192)' "$M/x")
[ "$r" = ENOSPC ] || bad "writing 8 KiB over the limit: $r"
rm "$M/new" "$M/new-link" "$M/big" || bad "deleting over the limit"
df_wait_avail "$M" 1500000 || bad "deleting 5 MB over a 2 MiB limit left no room"
randfile "$T/x" 500000 x
cp "$T/x" "$M/x" || bad "writing after the deletes"
fs_umount "$M"

log "without a limit mounts shows none"
fs_mount "$C2" "$M" --upper "$T/u4"
out=$(hb_ok mounts --json) || exit 1
python3 -c 'import json, sys
m = json.loads(sys.argv[1])[0]
assert m["limit"] is None and m["used"] is None, m' "$out" || bad "mounts --json without a limit: $out"
fs_umount "$M"
finish
