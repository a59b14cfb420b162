#!/bin/bash
# Requests for one file that the kernel sends at the same time: the file's
# size after concurrent WRITEs (an O_DIRECT write larger than max_write is
# split into requests served in parallel) is the data file's.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src"
echo x >"$T/src/x"
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
fs_mount "$ID" "$M" --upper "$T/upper"

log "concurrent WRITEs: the size is the last one, an O_APPEND write goes at the end"
python3 - "$M/dio" >"$T/dio.out" <<'PY' || bad "stale size after an O_DIRECT write: $(cat "$T/dio.out")"
import mmap, os, sys
p, n = sys.argv[1], 8 << 20
buf = mmap.mmap(-1, n)  # page aligned, as O_DIRECT wants
buf.write(b"D" * n)
for k in range(100):
    if os.path.exists(p):
        os.unlink(p)
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
    w = os.pwrite(fd, buf, 0)
    os.close(fd)
    size = os.stat(p).st_size
    if w != n or size != n:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"APPENDED")
        os.close(fd)
        print("try %d: wrote %d, size %d; an O_APPEND write then ends at %d"
              % (k, w, size, os.stat(p).st_size))
        sys.exit(1)
PY
fs_umount "$M"
finish
