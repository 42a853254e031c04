#!/usr/bin/env python3
"""Writes the seed corpora of the core/io fuzz targets into corpus/<target>/ beside this script.

The seeds are committed; rerun this after changing it. Standard library only: the TFRecord CRC (CRC32C,
masked as TFRecord does) and the Example protobuf bytes are produced by hand here, independently of
the C++ code under test.
"""
import gzip
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(records) -> bytes:
    out = b""
    for r in records:
        length = struct.pack("<Q", len(r))
        out += length + struct.pack("<I", masked(length)) + r + struct.pack("<I", masked(r))
    return out


def varint(n: int) -> bytes:
    out = b""
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field(number: int, payload: bytes) -> bytes:  # a length-delimited field
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def example(features) -> bytes:
    """features: {name: ("bytes"|"float"|"int64", [values])} -> serialized tensorflow.Example."""
    entries = b""
    for name, (kind, values) in sorted(features.items()):
        if kind == "bytes":
            feature = field(1, b"".join(field(1, v) for v in values))
        elif kind == "float":
            feature = field(2, field(1, b"".join(struct.pack("<f", v) for v in values)))
        else:
            feature = field(3, field(1, b"".join(varint(v) for v in values)))
        entries += field(1, field(1, name.encode()) + field(2, feature))
    return field(1, entries)


def idx(type_code: int, dims, fmt: str, values) -> bytes:
    header = struct.pack(">I", type_code << 8 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    return header + b"".join(struct.pack(">" + fmt, v) for v in values)


def safetensors(entries, metadata=None) -> bytes:
    """entries: (name, dtype, shape, raw bytes); laid out in order."""
    import json
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(target: str, name: str, data: bytes) -> None:
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    ex1 = example({"x": ("int64", [1])})
    ex2 = example({"image": ("bytes", [b"\x89PNG\r\n", b""]), "label": ("int64", [7, -1]),
                   "bbox": ("float", [0.1, 0.2, 0.5, 0.9])})
    write("example", "int64", ex1)
    write("example", "mixed", ex2)
    write("example", "empty", b"")

    write("tfrecord", "empty", b"")
    write("tfrecord", "one", tfrecord([b"hello"]))
    write("tfrecord", "three", tfrecord([b"alpha", b"", b"charlie" * 10]))
    write("tfrecord", "examples", tfrecord([ex1, ex2]))
    write("tfrecord", "gzip", gzip.compress(tfrecord([b"alpha", b"bravo" * 20]), mtime=0))

    # The CSV target's first byte picks the options (see csv_fuzz.cc): 0x01 header, 0x02 ';', 0x08 missing.
    write("csv", "header", b"\x01flag,count,score\ntrue,1,0.5\nFALSE,-20,3\n")
    write("csv", "quoted", b'\x01"x, first","say ""hi""","two\nlines"\r\n1,"2",3\r\n4,5,6')
    write("csv", "missing", b"\x09a,b\n1,\n,2.5\n\n")
    write("csv", "semicolon", b"\x02" + b"0.25; 7;255;1;1.5\n-1;-8;0;false;2\n")

    write("safetensors", "one", safetensors([("w", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))]))
    write("safetensors", "mixed", safetensors([("a", "F64", [2], struct.pack("<2d", 0.5, -1)),
                                               ("b", "I64", [1], struct.pack("<q", 7)),
                                               ("c", "BF16", [2], b"\x80\x3f\x00\x40"),
                                               ("d", "BOOL", [3], b"\x01\x00\x01"),
                                               ("e", "F32", [0, 3], b"")], {"step": "3"}))
    write("safetensors", "empty", safetensors([]))
    write("idx", "labels", idx(0x08, [5], "B", [0, 1, 2, 9, 255]))
    write("idx", "images", idx(0x08, [2, 2, 3], "B", range(12)))
    write("idx", "floats", idx(0x0D, [2, 2], "f", [0.5, -1.0, 3.25, 0.0]))
    write("idx", "ints_gz", gzip.compress(idx(0x0C, [3], "i", [1, -2, 3]), mtime=0))


if __name__ == "__main__":
    main()
