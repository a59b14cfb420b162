#!/bin/bash
# Commit of a mount that is being written: writers rewrite a 1 MiB file with
# one write() of a single repeated byte each time and create and remove files
# while commits run; every committed snapshot must hold the file whole (one
# byte value throughout, never a mix of two writes) and the mount must stay
# usable.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
head -c 1048576 /dev/zero >"$T/src/file"
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
fs_mount "$ID" "$M" --upper "$T/upper"

python3 - "$M" "$T/stop" <<'PY' &
import os, sys
m, stop = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(m, "file"), os.O_RDWR)
k = 0
while not os.path.exists(stop):
    k = k % 250 + 1
    os.pwrite(fd, bytes([k]) * 1048576, 0)
    p = os.path.join(m, "tmp%d" % (k % 7))
    with open(p, "w") as f:
        f.write("x" * k)
    if k % 3 == 0:
        os.unlink(p)
os.close(fd)
PY
writer=$!
ids=()
for i in 1 2 3 4 5 6; do
	sleep 0.2
	ids+=("$(fs_commit "$M")") || exit 1
done
touch "$T/stop"
wait "$writer" || bad "the writer failed"
ls "$M" >/dev/null || bad "mount unusable after commits"
for id in "${ids[@]}"; do
	fs_mount "$id" "$T/check"
	python3 - "$T/check/file" <<'PY' || bad "snapshot $id holds a torn file"
import sys
d = open(sys.argv[1], "rb").read()
sys.exit(0 if len(d) == 1048576 and d.count(d[0]) == len(d) else 1)
PY
	fs_umount "$T/check"
done
finish
