"""A second, independent implementation of pgflare's canonical row digest
(`pgflare-row-v1`, specified in the README) over Parquet files read with
pyarrow. It recomputes every table's and every file's combined row digest of
a pgflare archive and compares them with manifest.json, so the Rust
implementation and the written specification are checked against each other.

Usage: row_digest.py ARCHIVE_DIR            (exit 0 when all agree, 1 if not)
       row_digest.py --vectors FILE.json    (check digest test vectors)
"""
import json
import os
import struct
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from blake3 import blake3  # noqa: E402  (from the venv; see requirements)

MASK = (1 << 64) - 1


def lanes_add(acc, digest):
    return [(a + int.from_bytes(digest[i * 8:i * 8 + 8], "little")) & MASK for i, a in enumerate(acc)]


def lanes_hex(acc):
    return b"".join(a.to_bytes(8, "little") for a in acc).hex()


def raw_bits(arr, width):
    """Values of a primitive array as little-endian bytes, exactly as stored."""
    buf = arr.buffers()[1]
    return bytes(buf)[arr.offset * width:(arr.offset + len(arr)) * width]


class Column:
    """Encodes the values of one Arrow column per the specification."""

    def __init__(self, arr):
        if isinstance(arr.type, pa.BaseExtensionType):
            arr = arr.storage
        self.arr = arr
        t = arr.type
        self.kind = None
        if pa.types.is_boolean(t):
            self.kind, self.vals = "bool", arr.to_pylist()
        elif pa.types.is_integer(t) or pa.types.is_date32(t) or pa.types.is_time64(t) or pa.types.is_timestamp(t):
            # Dates are days (int32) and times/timestamps microseconds
            # (int64) underneath: take the stored integers, no conversion.
            if pa.types.is_date32(t):
                arr_int = arr.view(pa.int32())
            elif pa.types.is_integer(t):
                arr_int = arr
            else:
                arr_int = arr.view(pa.int64())
            self.kind, self.vals = "i64", pc.cast(arr_int, pa.int64()).to_pylist()
        elif pa.types.is_float32(t) or pa.types.is_float64(t):
            w = 4 if pa.types.is_float32(t) else 8
            self.kind, self.width, self.bits = "float", w, raw_bits(arr, w)
        elif pa.types.is_decimal(t):
            self.kind, self.scale, self.vals = "dec", t.scale, arr.to_pylist()
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            self.kind, self.vals = "bytes", [None if v is None else v.encode("utf-8") for v in arr.to_pylist()]
        elif pa.types.is_binary(t) or pa.types.is_fixed_size_binary(t):
            self.kind, self.vals = "bytes", arr.to_pylist()
        elif pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
            self.kind = "list"
        else:
            raise SystemExit(f"row_digest.py: no encoding for Arrow type {t}")

    def encode(self, row, out):
        a = self.arr
        if not a[row].is_valid:
            out.append(b"\x00")
            return
        out.append(b"\x01")
        k = self.kind
        if k == "bool":
            out.append(b"\x01" if self.vals[row] else b"\x00")
        elif k == "i64":
            out.append(struct.pack("<q", self.vals[row]))
        elif k == "float":
            out.append(self.bits[row * self.width:(row + 1) * self.width])
        elif k == "dec":
            n = int(self.vals[row].scaleb(self.scale))
            out.append(n.to_bytes(16, "little", signed=True))
        elif k == "bytes":
            v = self.vals[row]
            out.append(struct.pack("<Q", len(v)))
            out.append(v)
        else:
            items = a[row].values
            out.append(struct.pack("<Q", len(items)))
            if pa.types.is_float32(items.type) and items.null_count == 0:
                out.append(raw_bits(items, 4))
            else:
                inner = Column(items)
                for i in range(len(items)):
                    inner.encode(i, out)


def table_digests(table):
    cols = [Column(table.column(i).combine_chunks()) for i in range(table.num_columns)]
    for row in range(table.num_rows):
        out = [struct.pack("<I", len(cols))]
        for c in cols:
            c.encode(row, out)
        yield blake3(b"".join(out)).digest()


def check_archive(archive):
    manifest = json.load(open(os.path.join(archive, "manifest.json")))
    bad = 0
    # An archive of Cloudflare also has side tables (`_vectorize`): the same digests.
    for t in manifest["tables"] + manifest.get("side_tables", []):
        total = [0, 0, 0, 0]
        for f in t["files"]:
            acc = [0, 0, 0, 0]
            for d in table_digests(pq.read_table(os.path.join(archive, f["path"]))):
                acc = lanes_add(acc, d)
            total = [(x + y) & MASK for x, y in zip(total, acc)]
            if lanes_hex(acc) != f["row_digest"]:
                bad += 1
                print(f"{f['path']}: row digest {lanes_hex(acc)}, manifest says {f['row_digest']}")
        if lanes_hex(total) != t["row_digest"]:
            bad += 1
            print(f"{t['schema']}.{t['name']}: row digest {lanes_hex(total)}, manifest says {t['row_digest']}")
        print(f"{t['schema']}.{t['name']}: {t['rows']} rows checked")
    print(f"row_digest: {bad} disagreements")
    return 1 if bad else 0


def f32(h):
    return None if h is None else struct.unpack("<f", int(h, 16).to_bytes(4, "little"))[0]


def f64(h):
    return None if h is None else struct.unpack("<d", int(h, 16).to_bytes(8, "little"))[0]


def test_array(c):
    """One test-vector column as a one-row pyarrow array."""
    t, v = c["type"], c.get("value")
    simple = {"bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
              "utf8": pa.string(), "date32": pa.date32(), "time64us": pa.time64("us"),
              "timestamp_us": pa.timestamp("us"), "timestamp_us_utc": pa.timestamp("us", tz="UTC")}
    if t in simple:
        return pa.array([v], simple[t])
    if t == "float32":
        return pa.array([f32(c["bits"])], pa.float32())
    if t == "float64":
        return pa.array([f64(c["bits"])], pa.float64())
    if t == "decimal128(12,3)":
        import decimal
        return pa.array([decimal.Decimal(int(v)).scaleb(-3)], pa.decimal128(12, 3))
    if t == "binary":
        return pa.array([bytes.fromhex(c["hex"])], pa.binary())
    if t == "uuid":
        return pa.array([bytes.fromhex(c["hex"])], pa.binary(16))
    if t == "fixed_size_list<float32,3>":
        return pa.array([[f32(b) for b in c["bits"]]], pa.list_(pa.field("item", pa.float32(), nullable=False), 3))
    if t == "list<int64>":
        return pa.array([c["values"]], pa.list_(pa.int64()))
    if t == "list<utf8>":
        return pa.array([c["values"]], pa.list_(pa.string()))
    if t == "list<float64>":
        return pa.array([[f64(b) for b in c["bits"]]], pa.list_(pa.float64()))
    raise SystemExit(f"row_digest.py: no test-vector type {t}")


def canonical(v):
    """pgflare-vector-v1's canonical JSON: sorted keys, numbers as float64 repr."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v[k]) for k in sorted(v)) + "}"


def vector_digest(case):
    out = [struct.pack("<Q", len(case["id"].encode())), case["id"].encode()]
    ns = case.get("namespace")
    out.append(b"\x00" if ns is None else b"\x01" + struct.pack("<Q", len(ns.encode())) + ns.encode())
    out.append(struct.pack("<Q", len(case["bits"])))
    out += [int(b, 16).to_bytes(4, "little") for b in case["bits"]]
    meta = case.get("metadata")
    text = ("{}" if meta is None else canonical(meta)).encode()
    out += [struct.pack("<Q", len(text)), text]
    return blake3(b"".join(out)).hexdigest()


def check_vectors(path):
    doc = json.load(open(path, encoding="utf-8"))
    bad = 0
    for case in doc["rows"]:
        arrays = [test_array(c) for c in case["columns"]]
        if arrays:
            table = pa.table({f"c{i}": a for i, a in enumerate(arrays)})
            got = next(table_digests(table)).hex()
        else:
            got = blake3(struct.pack("<I", 0)).hexdigest()
        if got != case["digest"]:
            bad += 1
            print(f"row case {case['name']!r}: {got}, file says {case['digest']}")
    for case in doc["vectors"]:
        got = vector_digest(case)
        if got != case["digest"]:
            bad += 1
            print(f"vector case {case['name']!r}: {got}, file says {case['digest']}")
    print(f"row_digest: {len(doc['rows'])} row and {len(doc['vectors'])} vector test vectors, {bad} disagreements")
    return 1 if bad else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--vectors":
        return check_vectors(sys.argv[2])
    if len(sys.argv) == 2:
        return check_archive(sys.argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
