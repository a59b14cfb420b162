#!/usr/bin/env python3
"""treecmp: record and compare directory trees exactly, for hiberbox's
integration tests.

A restore must reproduce everything a tree holds: contents, file types,
modes (setuid/setgid/sticky included), owners, mtime and atime to the
nanosecond, symlink targets (dangling too), hard-link groups and link counts,
device numbers, every xattr (user.*, security.capability, POSIX ACLs as
system.posix_acl_*), and sparseness.  ctime cannot be set by anyone, so it is
never compared.

Usage:
  treecmp.py dump DIR OUT.json        record DIR (contents as sha256); atimes
                                      moved by looking are put back
  treecmp.py compare A B [options]    A: a directory or a dump; B: a directory
      --ignore-extra    entries only in B are fine (restore --force into a
                        directory that already held other files)
      --no-root-meta    do not compare the root directory's own metadata
      --no-atime        do not compare atimes
      --max N           print at most N differences (default 40)
  Exit status 0 if equal, 1 if not (differences on stdout), 2 on usage error.

Why a dump: reading a file or listing a directory moves its atime (relatime),
and the tool under test reads the source while snapshotting it, so the
expected state must be recorded before the snapshot.  Everything here opens
with O_NOATIME (allowed for root and for owners) so that looking does not
change what is looked at, and lstat()s an entry before reading it.
"""
import hashlib
import json
import os
import stat
import sys

O_NOATIME = getattr(os, "O_NOATIME", 0o1000000)


def _open_noatime(path, flags):
    try:
        return os.open(path, flags | O_NOATIME)
    except PermissionError:
        return os.open(path, flags)


def _xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError as e:
            out[name] = "<unreadable: %s>" % e.strerror
    return out


def _sha256(path):
    h = hashlib.sha256()
    fd = _open_noatime(path, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def _listdir(path):
    fd = _open_noatime(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sorted(os.fsencode(n) for n in os.listdir(fd))
    finally:
        os.close(fd)


def _kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"),
                       (stat.S_ISBLK, "blockdev"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"


def scan(root, keep_atimes=False):
    """Return {relative path (str, surrogateescape): record} for the tree.
    Records use only JSON types so a dump and a live scan compare alike.

    Two passes: every entry is lstat()ed before any file is read or any
    symlink resolved (readlink moves a symlink's atime, and one inode seen
    through two hard links must not show two atimes)."""
    root = os.fsencode(root)
    entries = {}
    inode_first = {}  # (dev, ino) -> first relative path seen
    todo = []
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        st = os.lstat(full)
        kind = _kind(st.st_mode)
        rec = {
            "kind": kind,
            "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime_ns": st.st_mtime_ns,
            "atime_ns": st.st_atime_ns,
        }
        if kind != "dir":
            rec["nlink"] = st.st_nlink
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                rec["link_group"] = os.fsdecode(inode_first.setdefault(key, rel))
        if kind == "file":
            rec["size"] = st.st_size
            rec["alloc"] = st.st_blocks * 512
        elif kind in ("chardev", "blockdev"):
            rec["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        entries[os.fsdecode(rel) if rel else "."] = rec
        todo.append((full, rec))
        if kind == "dir":
            for name in reversed(_listdir(full)):
                stack.append(os.path.join(rel, name) if rel else name)
    for full, rec in todo:
        rec["xattrs"] = _xattrs(full)
        if rec["kind"] == "file":
            rec["sha256"] = _sha256(full)
        elif rec["kind"] == "symlink":
            rec["target"] = os.fsdecode(os.readlink(full))
    if keep_atimes:
        # readlink() (and reads where O_NOATIME is refused) moved atimes the
        # tool under test will record: put them back as they were.
        for full, rec in todo:
            st = os.lstat(full)
            if st.st_atime_ns != rec["atime_ns"]:
                os.utime(full, ns=(rec["atime_ns"], st.st_mtime_ns), follow_symlinks=False)
    return entries


def load(src):
    if os.path.isdir(src):
        return scan(src)
    with open(src, "r", encoding="utf-8", errors="surrogateescape") as f:
        return json.load(f)


def _show(path):
    return repr(os.fsencode(path))[1:]


def _fmt_ns(ns):
    return "%d.%09d" % divmod(ns, 10**9)


SPARSE_MIN_SIZE = 1 << 20
SPARSE_SLACK = 2 << 20  # holes are found per chunk (max 256 KiB): allow a few


def compare(a, b, ignore_extra=False, root_meta=True, atime=True):
    diffs = []
    for path in sorted(a):
        ra = a[path]
        rb = b.get(path)
        p = _show(path)
        if rb is None:
            diffs.append("missing: %s (%s)" % (p, ra["kind"]))
            continue
        if ra["kind"] != rb["kind"]:
            diffs.append("type: %s is %s, expected %s" % (p, rb["kind"], ra["kind"]))
            continue
        if path == "." and not root_meta:
            continue
        if ra["mode"] != rb["mode"] and ra["kind"] != "symlink":
            diffs.append("mode: %s %04o, expected %04o" % (p, rb["mode"], ra["mode"]))
        for k in ("uid", "gid"):
            if ra[k] != rb[k]:
                diffs.append("%s: %s %d, expected %d" % (k, p, rb[k], ra[k]))
        times = ("mtime_ns", "atime_ns") if atime else ("mtime_ns",)
        for k in times:
            if ra[k] != rb[k]:
                diffs.append("%s: %s %s, expected %s" % (k[:5], p, _fmt_ns(rb[k]), _fmt_ns(ra[k])))
        if ra["xattrs"] != rb["xattrs"]:
            ka, kb = ra["xattrs"], rb["xattrs"]
            for name in sorted(set(ka) | set(kb)):
                if ka.get(name) != kb.get(name):
                    diffs.append("xattr: %s %s = %s, expected %s"
                                 % (p, name, kb.get(name, "<absent>")[:80],
                                    ka.get(name, "<absent>")[:80]))
        if ra["kind"] != "dir" and ra["nlink"] != rb["nlink"]:
            diffs.append("nlink: %s %d, expected %d" % (p, rb["nlink"], ra["nlink"]))
        if ra["kind"] == "file":
            if ra["size"] != rb["size"]:
                diffs.append("size: %s %d, expected %d" % (p, rb["size"], ra["size"]))
            elif ra["sha256"] != rb["sha256"]:
                diffs.append("content: %s differs" % p)
            if ra["size"] >= SPARSE_MIN_SIZE and ra["alloc"] * 4 < ra["size"]:
                limit = min(ra["alloc"] + SPARSE_SLACK, ra["size"] // 2)
                if rb["alloc"] > limit:
                    diffs.append("sparse: %s allocates %d bytes, source %d (limit %d)"
                                 % (p, rb["alloc"], ra["alloc"], limit))
        elif ra["kind"] == "symlink":
            if ra["target"] != rb["target"]:
                diffs.append("symlink: %s -> %s, expected -> %s"
                             % (p, _show(rb["target"]), _show(ra["target"])))
        elif ra["kind"] in ("chardev", "blockdev"):
            if ra["rdev"] != rb["rdev"]:
                diffs.append("rdev: %s %s, expected %s" % (p, rb["rdev"], ra["rdev"]))
    # Hard-link groups: the same sets of paths share an inode on both sides.
    def groups(entries):
        g = {}
        for path, r in entries.items():
            if "link_group" in r:
                g.setdefault(r["link_group"], set()).add(path)
        return {frozenset(s) for s in g.values()}
    ga, gb = groups(a), groups(b)
    if not ignore_extra:
        for s in sorted(ga - gb, key=sorted):
            diffs.append("hardlinks: expected one inode for %s" % ", ".join(map(_show, sorted(s))))
        for s in sorted(gb - ga, key=sorted):
            diffs.append("hardlinks: unexpected group %s" % ", ".join(map(_show, sorted(s))))
    else:
        for s in sorted(ga - gb, key=sorted):
            if not any(s <= t for t in gb):
                diffs.append("hardlinks: expected one inode for %s"
                             % ", ".join(map(_show, sorted(s))))
    if not ignore_extra:
        for path in sorted(set(b) - set(a)):
            diffs.append("extra: %s (%s)" % (_show(path), b[path]["kind"]))
    return diffs


def main(argv):
    if len(argv) >= 3 and argv[0] == "dump":
        entries = scan(argv[1], keep_atimes=True)
        with open(argv[2], "w", encoding="utf-8", errors="surrogateescape") as f:
            json.dump(entries, f, sort_keys=True)
        return 0
    if len(argv) >= 3 and argv[0] == "compare":
        opts = {"ignore_extra": False, "root_meta": True, "atime": True}
        maxn = 40
        rest = argv[3:]
        while rest:
            o = rest.pop(0)
            if o == "--ignore-extra":
                opts["ignore_extra"] = True
            elif o == "--no-root-meta":
                opts["root_meta"] = False
            elif o == "--no-atime":
                opts["atime"] = False
            elif o == "--max" and rest:
                maxn = int(rest.pop(0))
            else:
                print("treecmp: unknown option %s" % o, file=sys.stderr)
                return 2
        a = load(argv[1])
        if not os.path.isdir(argv[2]):
            print("treecmp: %s is not a directory" % argv[2])
            return 1
        b = scan(argv[2])
        diffs = compare(a, b, **opts)
        for d in diffs[:maxn]:
            print(d)
        if len(diffs) > maxn:
            print("... and %d more differences" % (len(diffs) - maxn))
        return 1 if diffs else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
