#!/bin/bash
# The upper directory on a full disk (a 1 MiB tmpfs): a journal append that
# fails part way must not cost the changes acknowledged after it.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
is_root || { echo "SKIP: needs root to mount a small tmpfs"; exit 77; }
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
printf 'lower a\n' >"$T/src/a.txt"
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

umount "$TINY"
finish
