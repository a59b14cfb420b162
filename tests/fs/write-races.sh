#!/bin/bash
# Requests for one file that the kernel sends at the same time: the file's
# size after concurrent WRITEs (an O_DIRECT write larger than max_write is
# split into requests served in parallel) is the data file's; a commit that
# ends while a WRITE is under way leaves that write its open state and fd.
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

log "a commit ending under a write keeps the file's open state"
# After a remount a dirty file has no open state until the kernel's first
# request: the commit's pin makes one, and a write that comes after the pin
# must hold its own.  HIBERBOX_FS_TEST_PAUSE_MS (test only) stops the commit
# 1 s after its pins and each WRITE 1 s with its fd in hand: the commit ends
# during the second write.
fs_mount "$ID" "$M" --upper "$T/upper-pin"
head -c 65536 /dev/zero >"$M/f"
fs_umount "$M"
HIBERBOX_FS_TEST_PAUSE_MS=1000 fs_mount "$ID" "$M" --upper "$T/upper-pin"
python3 - "$HIBERBOX" "$M" >"$T/pin.out" 2>&1 <<'PY' || bad "writes across the end of a commit: $(cat "$T/pin.out")"
import os, subprocess, sys, threading, time
hb, m = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(m, "f"), os.O_RDWR)  # no request: the fs has no state
commit = subprocess.Popen([hb, "commit", m], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
time.sleep(0.5)  # the commit has pinned f and waits
errors, done = [], []
def writer():
    k = 0
    while commit.poll() is None or k < 4:
        try:
            os.pwrite(fd, bytes([65 + k]) * 4096, k * 4096)
            done.append(k)
        except OSError as e:
            errors.append("write %d: %s" % (k, e))
        k += 1
t = threading.Thread(target=writer)
t.start()
out = commit.communicate()[0].decode()
t.join()
os.close(fd)
data = open(os.path.join(m, "f"), "rb").read()
want = bytearray(65536)
for k in done:
    want[k * 4096:(k + 1) * 4096] = bytes([65 + k]) * 4096
if commit.returncode:
    errors.append("commit failed: " + out)
if bytes(want) != data[:65536]:
    errors.append("the file does not hold the writes made")
print("; ".join(errors) or "ok")
sys.exit(1 if errors else 0)
PY
fs_umount "$M"
finish
