#!/usr/bin/env python3
"""Write the extract target's seed corpus (tests/fuzz/corpus/extract).

Each archive is written three times: compressed by zstd (or gzip), as a
zstd frame of raw (stored) blocks, and as a plain tar after the byte 0x01,
which the driver (fuzz_extract.lua) wraps itself after fixing the header
checksums, so that libFuzzer's mutations of the tar bytes reach the
extractor instead of breaking the compression or a checksum.
"""
import gzip
import io
import os
import struct
import subprocess
import tarfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "corpus", "extract")


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    bio = io.BytesIO()
    tf = tarfile.open(fileobj=bio, mode="w", format=fmt)
    for e in entries:
        kind, name = e[0], e[1]
        ti = tarfile.TarInfo(name)
        ti.mtime = 1700000000
        if kind == "f":
            data = e[2]
            ti.size = len(data)
            ti.mode = e[3] if len(e) > 3 else 0o644
            tf.addfile(ti, io.BytesIO(data))
            continue
        ti.type = {"d": tarfile.DIRTYPE, "s": tarfile.SYMTYPE,
                   "h": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                   "c": tarfile.CHRTYPE}[kind]
        ti.mode = e[3] if len(e) > 3 else (0o755 if kind == "d" else 0o777)
        if len(e) > 2:
            ti.linkname = e[2]
        tf.addfile(ti)
    tf.close()
    return bio.getvalue()


def zstd_raw(data):
    """A zstd frame holding `data` in raw blocks (no checksum)."""
    out = struct.pack("<I", 0xFD2FB528) + bytes([0x00, 0x58])
    blocks = [data[i:i + 65536] for i in range(0, len(data), 65536)] or [b""]
    for i, b in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        hdr = last | (0 << 1) | (len(b) << 3)
        out += struct.pack("<I", hdr)[:3] + b
    return out


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data,
                          capture_output=True, check=True).stdout


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


ARCHIVES = {
    "plain": [("d", "etc"), ("f", "etc/hello", b"hello\n"),
              ("s", "etc/link", "hello"), ("h", "etc/hard", "etc/hello")],
    "setuid": [("d", "usr"), ("d", "usr/bin"),
               ("f", "usr/bin/x", b"#!/bin/sh\n", 0o4755)],
    "whiteout": [("d", "etc"), ("f", "etc/.wh.gone", b""), ("d", "opt"),
                 ("f", "opt/.wh..wh..opq", b""), ("f", "opt/new", b"n")],
    "dotdot": [("f", "../escape", b"x")],
    "absolute": [("f", "/etc/abs", b"x")],
    "symlink-through": [("s", "evil", "../../../../outside/etc"),
                        ("f", "evil/passwd", b"pwned\n")],
    "symlink-abs": [("s", "evil", "/tmp"), ("f", "evil/pwned", b"pwned\n")],
    "hardlink-out": [("h", "pw", "../../../../outside/etc/passwd")],
    "special": [("fifo", "p"), ("c", "dev", "")],
    "longname": [("d", "a" * 120), ("f", "a" * 120 + "/" + "b" * 150,
                                     b"long"), ("s", "l", "c" * 300)],
    "typechange": [("f", "x", b"file"), ("d", "x"), ("f", "x/y", b"in")],
    "readonly-dir": [("d", "ro", "", 0o555), ("f", "ro/f", b"content")],
    "journal": [("d", "var"), ("d", "var/lib"), ("d", "var/lib/clayer"),
                ("f", "var/lib/clayer/journal", b"x")],
}

os.makedirs(OUT, exist_ok=True)
for name, entries in ARCHIVES.items():
    raw = tar_bytes(entries)
    write(name + ".tar.zst", zstd(raw))
    write(name + ".raw.zst", zstd_raw(raw))
    # the driver's plain-tar form: an odd first byte, then the tar with
    # its zero padding cut to the two end blocks
    body = raw.rstrip(b"\0")
    body += b"\0" * ((-len(body)) % 512) + b"\0" * 1024
    write(name + ".tar.plain", b"\x01" + body)
raw = tar_bytes([("f", "g" * 200, b"gnu")], fmt=tarfile.GNU_FORMAT)
write("gnu-longname.tar.gz", gzip.compress(raw, mtime=0))
write("gnu-longname.stored.gz", gzip.compress(raw, compresslevel=0, mtime=0))
whole = zstd(tar_bytes(ARCHIVES["plain"]))
write("truncated.tar.zst", whole[:len(whole) // 2])
