#!/usr/bin/env python3
"""treegen: the bulk parts of the test trees, and an open() tracer.

lib.sh builds the special entries (every file kind, modes, owners, xattrs,
ACLs, sparse files) with the standard tools; this helper does what would take
thousands of forks in shell, deterministically from a seed.

  treegen.py small DIR COUNT SEED      COUNT source-like files (0..12 KiB, some
                                       duplicated, some empty) in nested dirs
  treegen.py logs DIR MB SEED          compressible log files, MB in total
  treegen.py settimes DIR SEED         give every entry (symlinks and dirs
                                       too, bottom-up) distinct mtime and atime
                                       with nanoseconds; the root included
  treegen.py watch-opens DIR READY OUT trace open()/read() of regular files
                                       under DIR with inotify until SIGTERM;
                                       touch READY once watching; write the
                                       opened paths (relative) to OUT, one a
                                       line, or "OVERFLOW" if events were lost
"""
import ctypes
import os
import random
import select
import signal
import struct
import sys

WORDS = ("int", "return", "static", "const", "struct", "buf", "len", "size_t", "if", "for",
         "while", "error", "chunk", "pack", "index", "manifest", "void", "char", "uint64_t",
         "NULL", "goto", "out", "fail", "repo", "store", "oid", "errno", "data", "key", "node")


def source_text(rng, size):
    out = []
    n = 0
    while n < size:
        line = "\t" * rng.randint(0, 3) + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))
        line += ";  /* %08x */\n" % rng.getrandbits(32)
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def cmd_small(root, count, seed):
    rng = random.Random(seed)
    ndirs = max(1, count // 25)
    dirs = [root]
    for i in range(ndirs):
        parent = rng.choice(dirs) if len(dirs) < 8 or rng.random() < 0.7 else dirs[-1]
        # keep depth bounded: at most 6 levels below root
        if parent.count(os.sep) - root.count(os.sep) >= 6:
            parent = root
        d = os.path.join(parent, "d%03d_%s" % (i, rng.choice(WORDS)))
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    shared = [source_text(rng, rng.randint(100, 9000)) for _ in range(8)]
    for i in range(count):
        d = rng.choice(dirs)
        r = rng.random()
        if r < 0.03:
            data = b""
        elif r < 0.10:
            data = rng.choice(shared)  # identical content in many files
        elif r < 0.85:
            data = source_text(rng, rng.randint(1, 2047))  # inline-sized
        else:
            data = source_text(rng, rng.randint(2049, 12 * 1024))
        with open(os.path.join(d, "f%05d.%s" % (i, rng.choice(("c", "h", "txt", "py")))), "wb") as f:
            f.write(data)


def cmd_logs(root, mb, seed):
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    total = mb << 20
    per = max(1, total // 4)
    for i in range(4):
        with open(os.path.join(root, "service-%d.log" % i), "wb") as f:
            n = 0
            t = 1700000000 + i * 1000
            lines = []
            while n < per:
                t += rng.randint(0, 3)
                line = ("%d INFO  worker-%d request id=%08x path=/api/v1/%s status=%d ms=%d\n"
                        % (t, rng.randint(0, 7), rng.getrandbits(32), rng.choice(WORDS),
                           rng.choice((200, 200, 200, 404, 500)), rng.randint(1, 900))).encode()
                lines.append(line)
                n += len(line)
                if len(lines) >= 4096:
                    f.write(b"".join(lines))
                    lines = []
            f.write(b"".join(lines))


def cmd_settimes(root, seed):
    rng = random.Random(seed)
    base = 1600000000
    entries = []
    for dirpath, dirnames, filenames in os.walk(root.encode(), topdown=True):
        for n in dirnames + filenames:
            entries.append(os.path.join(dirpath, n))
    # children before parents: a parent's times are set after its last change
    entries.sort(key=lambda p: p.count(b"/"), reverse=True)
    entries.append(root.encode())
    for p in entries:
        m = (base + rng.randint(0, 10**8)) * 10**9 + rng.randint(0, 10**9 - 1)
        a = (base + rng.randint(0, 10**8)) * 10**9 + rng.randint(0, 10**9 - 1)
        os.utime(p, ns=(a, m), follow_symlinks=False)


IN_ACCESS = 0x1
IN_OPEN = 0x20
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000


def cmd_watch_opens(root, ready, out):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    wds = {}
    for dirpath, _dirs, _files in os.walk(root.encode()):
        wd = libc.inotify_add_watch(fd, dirpath, IN_OPEN | IN_ACCESS)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch %r" % dirpath)
        wds[wd] = os.path.relpath(dirpath, root.encode())
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    with open(ready, "w") as f:
        f.write("%d\n" % len(wds))
    opened = set()
    overflow = False

    def drain():
        nonlocal overflow
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            off = 0
            while off < len(data):
                wd, mask, _cookie, ln = struct.unpack_from("iIII", data, off)
                name = data[off + 16:off + 16 + ln].rstrip(b"\0")
                off += 16 + ln
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif not (mask & IN_ISDIR) and name:
                    opened.add(os.path.normpath(os.path.join(wds.get(wd, b"?"), name)))

    while not stop:
        try:
            select.select([fd], [], [], 0.2)
        except InterruptedError:
            pass
        drain()
    drain()
    with open(out, "wb") as f:
        if overflow:
            f.write(b"OVERFLOW\n")
        for p in sorted(opened):
            f.write(p + b"\n")
    return 0


def main(argv):
    if len(argv) == 4 and argv[0] == "small":
        return cmd_small(argv[1], int(argv[2]), int(argv[3])) or 0
    if len(argv) == 4 and argv[0] == "logs":
        return cmd_logs(argv[1], int(argv[2]), int(argv[3])) or 0
    if len(argv) == 3 and argv[0] == "settimes":
        return cmd_settimes(argv[1], int(argv[2])) or 0
    if len(argv) == 4 and argv[0] == "watch-opens":
        return cmd_watch_opens(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
