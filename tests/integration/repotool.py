#!/usr/bin/env python3
"""repotool: read and damage hiberbox repository files on purpose, for the
integrity and bad-input tests.  Formats: snapshot/pack.h, snapshot/manifest.h,
snapshot/oid.h (ids are keyed XXH3-128 in canonical big-endian order; the
key is the config's "secret").  XXH3 comes from the system libxxhash through
ctypes, so nothing needs installing.

  repotool.py pack-entries PACK           one line per chunk:
                                          id offset length raw_length flags
  repotool.py manifest-layout FILE        version info_len body_off body_len
  repotool.py manifest-set-version FILE N [--keep-checksum]
  repotool.py manifest-fix-checksum FILE
  repotool.py manifest-rename IN OUT OLD NEW
        replace the entry name OLD by NEW (same length; NEW may hold '/',
        NUL as \\0, "..") inside the zstd body, fix lengths and checksum
  repotool.py oid CONFIG FILE             keyed id of FILE's bytes
"""
import ctypes
import json
import struct
import subprocess
import sys

_lib = None


def lib():
    global _lib
    if _lib is None:
        for name in ("libxxhash.so.0", "libxxhash.so"):
            try:
                _lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if _lib is None:
            sys.exit("repotool: libxxhash not found")

        class H128(ctypes.Structure):
            _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]
        _lib.XXH3_64bits.restype = ctypes.c_uint64
        _lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _lib.XXH3_128bits_withSecret.restype = H128
        _lib.XXH3_128bits_withSecret.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                 ctypes.c_char_p, ctypes.c_size_t]
    return _lib


def xxh3_64(data):
    return lib().XXH3_64bits(data, len(data))


def keyed_oid(secret, data):
    h = lib().XXH3_128bits_withSecret(data, len(data), secret, len(secret))
    return struct.pack(">QQ", h.high64, h.low64).hex()


def pack_entries(path):
    data = open(path, "rb").read()
    count, entries_bytes, _ck = struct.unpack_from("<IIQ", data, len(data) - 24)
    start = len(data) - 24 - entries_bytes
    for i in range(count):
        cid = data[start + 32 * i:start + 32 * i + 16].hex()
        off, ln, raw, flags = struct.unpack_from("<IIII", data, start + 32 * i + 16)
        print(cid, off, ln, raw, flags)


def layout(data):
    version, info_len = struct.unpack_from("<II", data, 8)
    raw_len, body_len = struct.unpack_from("<QQ", data, 16 + info_len)
    return version, info_len, 32 + info_len, body_len, raw_len


def fix_checksum(data):
    data = bytearray(data)
    struct.pack_into("<Q", data, len(data) - 8, xxh3_64(bytes(data[:-8])))
    return bytes(data)


def set_version(path, version, keep):
    data = bytearray(open(path, "rb").read())
    struct.pack_into("<I", data, 8, version)
    out = bytes(data) if keep else fix_checksum(data)
    open(path, "wb").write(out)


def rename(src, dst, old, new):
    old = old.encode().decode("unicode_escape").encode("latin-1")
    new = new.encode().decode("unicode_escape").encode("latin-1")
    if len(old) != len(new) or len(old) >= 128:
        sys.exit("repotool: OLD and NEW must have the same length (< 128)")
    data = open(src, "rb").read()
    _v, info_len, body_off, body_len, raw_len = layout(data)
    body = subprocess.run(["zstd", "-d", "-q", "-c"], input=data[body_off:body_off + body_len],
                          stdout=subprocess.PIPE, check=True).stdout
    if len(body) != raw_len:
        sys.exit("repotool: body length %d, header says %d" % (len(body), raw_len))
    needle = bytes([len(old)]) + old  # name:s with a one-byte varint length
    n = body.count(needle)
    if n != 1:
        sys.exit("repotool: name %r found %d times in the body" % (old, n))
    body = body.replace(needle, bytes([len(new)]) + new)
    z = subprocess.run(["zstd", "-q", "-c", "-3", "--stream-size=%d" % len(body)], input=body,
                       stdout=subprocess.PIPE,
                       check=True).stdout
    out = bytearray(data[:16 + info_len])
    out += struct.pack("<QQ", len(body), len(z)) + z + b"\0" * 8
    open(dst, "wb").write(fix_checksum(out))


def main(argv):
    if len(argv) == 2 and argv[0] == "pack-entries":
        pack_entries(argv[1])
    elif len(argv) == 2 and argv[0] == "manifest-layout":
        v, il, bo, bl, _rl = layout(open(argv[1], "rb").read())
        print(v, il, bo, bl)
    elif len(argv) >= 3 and argv[0] == "manifest-set-version":
        set_version(argv[1], int(argv[2]), "--keep-checksum" in argv[3:])
    elif len(argv) == 2 and argv[0] == "manifest-fix-checksum":
        open(argv[1], "r+b").write(fix_checksum(open(argv[1], "rb").read()))
    elif len(argv) == 5 and argv[0] == "manifest-rename":
        rename(argv[1], argv[2], argv[3], argv[4])
    elif len(argv) == 3 and argv[0] == "oid":
        secret = bytes.fromhex(json.load(open(argv[1]))["secret"])
        print(keyed_oid(secret, open(argv[2], "rb").read()))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
