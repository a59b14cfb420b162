#!/bin/bash
# FUSE over io_uring (fs/uring.c).  Where the kernel has it (the fuse module's
# enable_uring parameter; `hiberbox mount` as root turns it on), a mount's
# requests must go through the rings, with the same results as through
# /dev/fuse: an untar, a random workload checked call by call against a
# native tree (fs-model), large reads and writes (a full max_write payload),
# xattrs, O_TMPFILE and a commit.  HIBERBOX_FS_URING=0 keeps /dev/fuse.
# A SIGKILL of the fs process with ring requests in flight: the mountpoint
# fails at once, `umount` clears it, nothing written before is lost.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
PARAM=/sys/module/fuse/parameters/enable_uring
[ -e "$PARAM" ] || { echo "SKIP: this kernel has no FUSE over io_uring"; exit 77; }
[ "$(id -u)" = 0 ] || [ "$(cat $PARAM)" = Y ] || { echo "SKIP: enable_uring is off and needs root"; exit 77; }
fs_model_start

# transport MOUNTPOINT: the fs process's answer to "transport" on its
# control socket ("ok io_uring N" or "ok /dev/fuse").
transport() {
	python3 - "$HIBERBOX_HOME/mounts" "$1" <<'EOF'
import glob, json, os, socket, sys
for info in glob.glob(os.path.join(sys.argv[1], "*.json")):
    with open(info) as f:
        m = json.load(f)
    if os.path.realpath(m["mountpoint"]) != os.path.realpath(sys.argv[2]):
        continue
    s = socket.socket(socket.AF_UNIX)
    s.connect(info[:-5] + ".sock")
    s.sendall(b"transport\n")
    print(s.makefile().readline().strip())
    sys.exit(0)
sys.exit("no mount info for " + sys.argv[2])
EOF
}

# A random workload checked against a native tree, call by call.
fs_mount "$ID" "$T/mnt-model"
[ "$(cat $PARAM)" = Y ] || fail "mount as root left enable_uring off"
cp -a "$T/src" "$T/native"
"$FS_MODEL" "$T/mnt-model" "$T/native" 4242 3000 >"$T/model.out" 2>&1 ||
	{ tail -n 20 "$T/model.out" >&2; fail "fs-model on the io_uring mount"; }
fs_umount "$T/mnt-model"

M="$T/mnt"
fs_mount "$ID" "$M"

# An untar of many small files and a few big ones.
mkdir -p "$T/tree/pkg"
for i in $(seq 1 400); do printf 'module %d\n' "$i" >"$T/tree/pkg/m$i.js"; done
randfile "$T/tree/big1" 3000000 b1
randfile "$T/tree/big2" $((1024 * 1024)) b2
ln -s pkg/m1.js "$T/tree/link"
tar -C "$T/tree" -cf "$T/tree.tar" .
tar -C "$M" -xf "$T/tree.tar" || fail "untar onto the mount"
diff -r "$T/tree" "$M" >/dev/null 2>&1 || true # lower entries are there too
for f in pkg/m1.js pkg/m400.js big1 big2 link; do
	cmp "$T/tree/$f" "$M/$f" || fail "$f differs after untar"
done
t=$(transport "$M") || fail "no answer from the control socket"
case "$t" in
"ok io_uring "*) n=${t#ok io_uring }
	[ "$n" -gt 400 ] || fail "only $n requests came through the rings ($t)" ;;
*) fail "the mount is not on io_uring: $t" ;;
esac

# One write and one read of a full max_write payload (1 MiB) and more.
dd if="$T/tree/big1" of="$M/dd-copy" bs=1M iflag=fullblock status=none || fail "dd 1M writes"
cmp "$T/tree/big1" "$M/dd-copy" || fail "1 MiB writes differ"
dd if="$M/big1" of="$T/dd-back" bs=1M status=none || fail "dd 1M reads"
cmp "$T/tree/big1" "$T/dd-back" || fail "1 MiB reads differ"

# xattrs (a value in the payload, a reply in the payload) and O_TMPFILE
# (made into a CREATE before libfuse parses it, on the ring path too).
setfattr -n user.big -v "0x$(head -c 3000 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$M/pkg/m2.js" ||
	fail "setfattr of 3000 bytes"
[ "$(getfattr --only-values -n user.big "$M/pkg/m2.js" | wc -c)" = 3000 ] || fail "xattr value read back"
python3 - "$M" <<'EOF' || fail "O_TMPFILE then linkat"
import os, sys
fd = os.open(sys.argv[1], os.O_TMPFILE | os.O_WRONLY, 0o644)
os.write(fd, b"tmpfile data\n")
# linkat(fd, "", AT_FDCWD, name, AT_SYMLINK_FOLLOW) through /proc, as the
# os module cannot pass the flag
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.linkat(-100, ("/proc/self/fd/%d" % fd).encode(), -100,
               os.path.join(sys.argv[1], "from-tmpfile").encode(), 0x400) != 0:
    sys.exit("linkat: " + os.strerror(ctypes.get_errno()))
os.close(fd)
EOF
[ "$(cat "$M/from-tmpfile")" = "tmpfile data" ] || fail "O_TMPFILE content"

C=$(fs_commit "$M") || exit 1
fs_umount "$M"
fs_mount "$C" "$T/mnt-c"
cmp "$T/tree/big1" "$T/mnt-c/big1" || fail "big1 after commit and remount"
[ "$(cat "$T/mnt-c/from-tmpfile")" = "tmpfile data" ] || fail "tmpfile after commit"
fs_umount "$T/mnt-c"

# HIBERBOX_FS_URING=0: /dev/fuse as before.
mkdir -p "$T/mnt-dev"
FS_MOUNTS+=("$T/mnt-dev")
HIBERBOX_FS_URING=0 hb_ok mount "$C" "$T/mnt-dev" >/dev/null
[ "$(transport "$T/mnt-dev")" = "ok /dev/fuse" ] || fail "HIBERBOX_FS_URING=0 did not keep /dev/fuse"
cmp "$T/tree/big2" "$T/mnt-dev/big2" || fail "big2 through /dev/fuse"
fs_umount "$T/mnt-dev"

# SIGKILL with ring requests in flight.
K="$T/mnt-kill"
fs_mount "$C" "$K" --upper "$T/upper-kill"
echo before >"$K/kept"
sync "$K/kept"
( while :; do cat "$K"/pkg/*.js >/dev/null 2>&1; echo x >>"$K/busy" 2>/dev/null || exit 0; done ) &
busy=$!
sleep 0.5
kill -9 "$(fs_pid "$K")"
sleep 0.3
kill "$busy" 2>/dev/null
wait "$busy" 2>/dev/null
if timeout 5 stat "$K/kept" >/dev/null 2>&1; then fail "the dead mount still answers"; fi
timeout 60 "$HIBERBOX" umount "$K" >/dev/null 2>&1 || fail "umount of the dead mount"
fs_mount "$C" "$K" --upper "$T/upper-kill"
[ "$(cat "$K/kept")" = before ] || fail "a write before the kill was lost"
fs_umount "$K"
echo "PASS"
