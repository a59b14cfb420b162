#!/bin/bash
# --upper-limit: the tree of a mount takes at most the limit (the lower
# files, the upper's data files and journal; tree-limit.sh has what the
# lower's part does across commits).  Growth beyond is ENOSPC (write,
# truncate up, fallocate, create/mkdir); what was written stays; delete,
# truncate down, overwrite in place (of a lower file too) and commit keep
# working; statfs shows the limit and the use, which survive a remount and a
# SIGKILL of the fs process.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
printf 'lower a\n' >"$T/src/a.txt"
randfile "$T/src/big" 2000000 big
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
U="$T/upper"
LIMIT=$((4 << 20))
LOWER=$((4096 + 2002944)) # a.txt and big, rounded up to 4 KiB

log "bad --upper-limit values are usage errors"
mkdir -p "$M"
expect_usage_error "--upper-limit abc" mount "$ID" "$M" --upper-limit abc
expect_usage_error "--upper-limit 1K (too small)" mount "$ID" "$M" --upper-limit 1K
mountpoint -q "$M" && fail "a refused mount is mounted"

log "statfs shows the limit"
fs_mount "$ID" "$M" --upper "$U" --upper-limit 4M
read -r total used avail < <(df_of "$M")
[ "$total" -eq "$LIMIT" ] || bad "statfs total $total, not the limit $LIMIT"
[ "$used" -ge "$LOWER" ] && [ "$used" -lt $((LOWER + 65536)) ] ||
	bad "an empty upper over a lower of $LOWER bytes uses $used bytes"
[ "$avail" -gt $((LIMIT - LOWER - 65536)) ] || bad "an empty upper has only $avail bytes free"

log "writes stop at the limit with ENOSPC, and nothing written is lost"
randfile "$T/keep1" 300000 keep1
cp "$T/keep1" "$M/keep1" || bad "writing keep1"
mkdir "$M/dir" && printf 'small\n' >"$M/dir/keep2" || bad "writing dir/keep2"
dd if=/dev/zero of="$M/fill" bs=64k count=100 2>"$T/dd.err" && fail "a 6.4 MB file fit in a 4 MiB upper"
grep -q "No space left" "$T/dd.err" || bad "dd at the limit: $(cat "$T/dd.err")"
fill=$(stat -c %s "$M/fill")
[ "$fill" -gt $((LIMIT - LOWER - 300000 - 200000)) ] || bad "only $fill bytes of fill went in below the limit"
read -r total used avail < <(df_of "$M")
[ "$used" -le "$LIMIT" ] || bad "statfs shows $used bytes used, above the limit"
[ "$avail" -lt 8192 ] || bad "statfs shows $avail bytes free on a full upper"
cmp -s "$T/keep1" "$M/keep1" || bad "keep1 changed when the upper filled"
[ "$(cat "$M/dir/keep2")" = small ] || bad "dir/keep2 changed when the upper filled"
r=$(errno_of 'fd = os.open(p, os.O_WRONLY | os.O_CREAT); os.write(fd, b"x" * 8192)' "$M/new")
[ "$r" = ENOSPC ] || bad "writing 8 KiB to a new file on a full upper: $r"
r=$(errno_of 'os.truncate(p, 10 << 20)' "$M/keep1")
[ "$r" = ENOSPC ] || bad "truncating keep1 up to 10 MiB on a full upper: $r"
r=$(errno_of 'fd = os.open(p, os.O_WRONLY); os.posix_fallocate(fd, 0, 1 << 20)' "$M/dir/keep2")
[ "$r" = ENOSPC ] || bad "fallocate of 1 MiB on a full upper: $r"
fallocate -n -l 1M "$M/dir/keep2" 2>/dev/null && bad "fallocate --keep-size of 1 MiB on a full upper succeeded"
# a lower file counts already: its copy-up takes no more (it was ENOSPC
# when only the upper counted)
r=$(errno_of 'fd = os.open(p, os.O_WRONLY); os.write(fd, b"x")' "$M/big")
[ "$r" = OK ] || bad "overwriting the 2 MB lower file in place on a full upper: $r"
printf 'x' | dd of="$T/src/big" conv=notrunc 2>/dev/null
cmp -s "$T/src/big" "$M/big" || bad "the lower file after its copy-up on a full upper"
for i in $(seq 1000); do
	mkdir "$M/d$i" 2>/dev/null || break
done
[ "$i" -lt 1000 ] || bad "1000 mkdirs fit in a full upper (the journal is not counted)"
r=$(errno_of 'os.setxattr(p, "user.big", b"v" * 60000)' "$M/keep1")
[ "$r" = ENOSPC ] || bad "a 60000-byte xattr on a full upper: $r"

log "a full upper recovers: overwrite, truncate down, commit, delete"
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"OVER", 0)' "$M/keep1" || bad "overwriting in place on a full upper"
printf 'OVER' | dd of="$T/keep1" conv=notrunc 2>/dev/null
truncate -s 1M "$M/fill" || bad "truncating down on a full upper"
read -r total used2 avail < <(df_of "$M")
[ "$used2" -lt $((used - fill + (1 << 20) + 65536)) ] || bad "truncating fill down to 1 MiB: used $used -> $used2"
C=$(fs_commit "$M") || exit 1
rm "$M/fill" || bad "deleting on a full upper"
for _ in $(seq 1200); do # the data file goes when the kernel forgets the node (60 s at most)
	read -r total used3 avail < <(df_of "$M")
	[ "$avail" -gt $((LIMIT - LOWER - 300000 - 200000)) ] && break
	sleep 0.05
done
[ "$avail" -gt $((LIMIT - LOWER - 300000 - 200000)) ] || bad "rm fill freed nothing: $avail bytes free"
randfile "$T/again" 1000000 again
cp "$T/again" "$M/again" || bad "writing 1 MB after the delete"
cmp -s "$T/keep1" "$M/keep1" || bad "keep1 after the recovery"
mkdir -p "$T/restored"
hb_ok snapshot restore "$C" "$T/restored" >/dev/null
cmp -s "$T/keep1" "$T/restored/keep1" || bad "the commit on a full upper lost keep1"
[ "$(cat "$T/restored/dir/keep2")" = small ] || bad "the commit on a full upper lost dir/keep2"

log "the use is the same after a remount"
read -r total before avail < <(df_of "$M")
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U" --upper-limit 4M
read -r total after avail < <(df_of "$M")
[ "$after" -eq "$before" ] || bad "used $before before a remount, $after after"
dd if=/dev/zero of="$M/fill2" bs=64k count=100 2>/dev/null && bad "the remounted upper took 6.4 MB more"
read -r total used avail < <(df_of "$M")
[ "$used" -le "$LIMIT" ] || bad "after a remount the upper went past its limit: $used"
rm "$M/fill2"
cmp -s "$T/again" "$M/again" || bad "again after the remount"

log "... and after a SIGKILL of the fs process"
df_wait_avail "$M" 600000 || bad "rm fill2 freed nothing"
randfile "$T/more" 500000 more
cp "$T/more" "$M/more" || bad "writing more"
read -r total before avail < <(df_of "$M")
fs_kill "$M"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U" --upper-limit 4M
read -r total after avail < <(df_of "$M")
[ "$after" -eq "$before" ] || bad "used $before before a SIGKILL, $after after the remount"
cmp -s "$T/more" "$M/more" || bad "more after the SIGKILL"

log "a smaller limit than the upper holds: everything stays, growth is refused"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U" --upper-limit 1M
cmp -s "$T/again" "$M/again" || bad "again under a smaller limit"
# (the slack of the last block may take a first write)
r=$(errno_of 'fd = os.open(p, os.O_WRONLY | os.O_APPEND)
for _ in range(3): os.write(fd, b"x" * 8192)' "$M/again")
[ "$r" = ENOSPC ] || bad "appending above a smaller limit: $r"
rm "$M/again" || bad "deleting above a smaller limit"
fs_umount "$M"

log "without a limit statfs is the upper's disk"
fs_mount "$ID" "$M" --upper "$T/upper-nolimit"
read -r total used avail < <(df_of "$M")
host=$(df_of "$T" | cut -d' ' -f1)
[ "$total" -eq "$host" ] || bad "statfs without a limit: $total, the disk has $host"
fs_umount "$M"
finish
