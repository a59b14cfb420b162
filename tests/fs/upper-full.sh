#!/bin/bash
# The upper directory on a full disk (a 1 MiB tmpfs): a journal append that
# fails part way must not cost the changes acknowledged after it, and a
# change that cannot be journaled is not made (not even until a remount).
# Also: a node's xattrs are capped below the journal's record size.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
is_root || { echo "SKIP: needs root to mount a small tmpfs"; exit 77; }
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
printf 'lower a\n' >"$T/src/a.txt"
printf 'lower b\n' >"$T/src/b.txt"
printf 'lower c\n' >"$T/src/c.txt"
chmod 0644 "$T/src/b.txt" "$T/src/c.txt"
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
TINY="$T/tiny"
mkdir -p "$TINY"
mount -t tmpfs -o size=1m tmpfs "$TINY" 2>/dev/null || { echo "SKIP: cannot mount tmpfs"; exit 77; }
FS_MOUNTS+=("$TINY") # after the fs mount in the list: unmounted (lazily) on exit

# fill_upper: fills the upper disk through the mount (ENOSPC expected).
fill_upper() {
	dd if=/dev/zero of="$M/fill" bs=64k count=64 2>/dev/null
	[ $? -ne 0 ] || fail "the 1 MiB upper took 4 MiB"
}

# setxattr_errno PATH NAME BYTES: prints the errno name of the setxattr (OK).
setxattr_errno() {
	python3 - "$@" <<'PY'
import errno, os, sys
try:
    os.setxattr(sys.argv[1], sys.argv[2], b"v" * int(sys.argv[3]))
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
PY
}

# getxattr_len PATH NAME: the value's length, or the errno name.
getxattr_len() {
	python3 -c 'import errno, os, sys
try:
    print(len(os.getxattr(sys.argv[1], sys.argv[2])))
except OSError as e:
    print(errno.errorcode[e.errno])' "$@"
}

log "a record cut short by ENOSPC does not swallow later records"
fs_mount "$ID" "$M" --upper "$TINY/upper"
fill_upper
r=$(setxattr_errno "$M/a.txt" user.big 60000)
[ "$r" = ENOSPC ] || bad "setxattr of 60000 bytes on a full upper: $r, not ENOSPC"
truncate -s 0 "$M/fill"
mkdir "$M/after-enospc" || bad "mkdir after the failed append"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$TINY/upper"
[ -d "$M/after-enospc" ] || bad "a change acknowledged after a failed journal append is lost at remount"
grep -q "dropping a torn tail" "$HIBERBOX_HOME/fs.log" && bad "the failed append left a torn record in the journal"
fs_umount "$M"

log "changes that cannot be journaled are not made"
rm -rf "$TINY/upper"
fs_mount "$ID" "$M" --upper "$TINY/upper"
# b.txt's records carry its xattr: larger than the c.txt ones that fill the
# journal's last page below
[ "$(setxattr_errno "$M/b.txt" user.pad 300)" = OK ] || bad "setxattr on an empty upper"
mkdir "$M/d" || bad "mkdir on an empty upper"
fill_upper
r=$(setxattr_errno "$M/a.txt" user.big 60000)
[ "$r" = ENOSPC ] || bad "setxattr of 60000 bytes on a full upper: $r, not ENOSPC"
r=$(getxattr_len "$M/a.txt" user.big)
[ "$r" = ENODATA ] || bad "an xattr that could not be journaled is there anyway ($r)"
for i in $(seq 1000); do
	chmod $((i % 2 ? 600 : 644)) "$M/c.txt" 2>/dev/null || break
done
[ "$i" -lt 1000 ] || fail "the journal never ran out of room"
chmod 0600 "$M/b.txt" 2>/dev/null && fail "chmod with a larger record than the last one that failed succeeded"
[ "$(stat -c %a "$M/b.txt")" = 644 ] || bad "a chmod that could not be journaled is there anyway: $(stat -c %a "$M/b.txt")"
# a create, rename or link that fails leaves its directory's times alone
# (seen once the kernel forgets d and asks the fs again)
d_times=$(stat -c '%y %z' "$M/d")
sleep 0.05
mkdir "$M/d/x" 2>/dev/null && fail "mkdir with a full journal succeeded"
ln "$M/a.txt" "$M/d/a-link" 2>/dev/null && fail "link with a full journal succeeded"
sync && echo 2 >/proc/sys/vm/drop_caches
[ "$(stat -c '%y %z' "$M/d")" = "$d_times" ] ||
	bad "failed changes moved their directory's times: $d_times -> $(stat -c '%y %z' "$M/d")"
python3 -c 'import os, sys; os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)' "$M/b.txt" 2>/dev/null &&
	fail "a copy-up with a record larger than the last one that failed succeeded"
truncate -s 0 "$M/fill"
# no O_TRUNC: a write that finds the data upper already journals nothing
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"UPPER", 0)' "$M/b.txt" || bad "writing b.txt once there is room again"
setfattr -n user.after -v 1 "$M/a.txt" || bad "setxattr once there is room again"
touch -a "$M/b.txt" # a record of b.txt's metadata as it is in memory
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$TINY/upper"
[ "$(cat "$M/b.txt")" = "UPPER b" ] || bad "a write after a failed copy-up is lost at remount: $(cat "$M/b.txt")"
[ "$(stat -c %a "$M/b.txt")" = 644 ] || bad "b.txt's mode after remount: $(stat -c %a "$M/b.txt")"
[ "$(getxattr_len "$M/b.txt" user.pad)" = 300 ] || bad "b.txt's xattr after remount"
[ "$(getxattr_len "$M/a.txt" user.big)" = ENODATA ] || bad "the failed xattr is there after remount"
[ "$(getxattr_len "$M/a.txt" user.after)" = 1 ] || bad "the xattr set after the failure is lost at remount"
fs_umount "$M"
umount "$TINY"

log "a node's xattrs stop below the journal's record size, with ENOSPC"
fs_mount "$ID" "$M" --upper "$T/upper"
python3 - "$M/a.txt" >"$T/xattrs.out" <<'PY'
import errno, os, sys
p = sys.argv[1]
ok, err = 0, "none"
for k in range(256):
    try:
        os.setxattr(p, "user.x%03d" % k, b"x" * 65536)
        ok += 1
    except OSError as e:
        err = errno.errorcode[e.errno]
        break
print(ok, err, len(os.listxattr(p)))
PY
read -r ok err listed <"$T/xattrs.out"
[ "$err" = ENOSPC ] || bad "256 xattrs of 64 KiB: the first failure is '$err' after $ok, not ENOSPC"
[ "$listed" = "$ok" ] || bad "listxattr shows $listed xattrs, $ok were set"
printf 'new a\n' >"$M/a.txt" || bad "writing a file with many xattrs"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$T/upper"
[ "$(cat "$M/a.txt")" = "new a" ] || bad "a write to a file with many xattrs is lost at remount"
[ "$(python3 -c 'import os, sys; print(len(os.listxattr(sys.argv[1])))' "$M/a.txt")" = "$ok" ] ||
	bad "xattrs after remount differ"
fs_umount "$M"
finish
