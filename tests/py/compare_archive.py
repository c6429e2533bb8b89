#!/usr/bin/env python3
"""Independent check that a `pgflare archive` folder holds exactly the source rows.

    compare_archive.py --database-url URL --archive DIR [--table NAME ...] [--reader R ...]

URL may come from DATABASE_URL. Used by the Rust integration tests. Nothing of
pgflare is reused: of DIR/manifest.json only each table's schema, name,
primary_key and column names (and `cast`: what was read) are used. All Parquet
files of a table are read by each of pyarrow, DuckDB and polars
(archive_readers.py; --reader picks some) and every reader's rows are matched
with the table's rows in Postgres (psycopg, one REPEATABLE READ snapshot, read
once) by primary key (without one, by whole row); differences name the reader.
Every value is compared as the column's catalog type says (domains unwrapped):
real/double (and arrays), vector, halfvec bit for bit via their send forms;
numeric, enums, unknown types as Postgres text; json/jsonb as exact text and
parsed value; timestamps/time in microseconds, dates in days since 1970; the
rest as psycopg reads them (uuid as bytes, char(n) padding kept). Exit 0: no
difference, 1: differences, 2: usage, connection or database error.
"""

import argparse
import json
import os
import re
import struct
import sys
import uuid
from array import array
from collections import Counter
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
from psycopg import sql

import archive_readers

NATIVE = {"bool", "int2", "int4", "int8", "text", "varchar", "bpchar", "name", "uuid", "bytea"}
FLOAT_CATS = {"f4": 32, "f8": 64, "f4[]": 32, "f8[]": 64, "vector": 32, "halfvec": 32}


def usage_error(message):
    message = re.sub(r"(://[^/@\s:]*:)[^@/\s]*@", r"\1***@", str(message))  # never show a password
    message = re.sub(r"(password=)[^&\s'\"]*", r"\1***", message, flags=re.I)
    print(f"compare_archive: error: {message}", file=sys.stderr)
    sys.exit(2)


def short(text, width=200):
    return text if len(text) <= width else text[: width - 1] + "…"


def json_form(text, *parsed):
    """json/jsonb as (exact text, json.dumps of the value parsed by psycopg or here: tells 1 from 1.0 and true)."""
    try:
        return text, json.dumps(parsed[0] if parsed else json.loads(text), sort_keys=True, ensure_ascii=False)
    except ValueError as e:
        return text, f"<invalid JSON: {e}>"


def norm(v, text=False):
    """Shared normal form: uuid as 16 bytes, Decimal as plain text; with text=True everything as str."""
    if isinstance(v, list):
        return [norm(x, text) for x in v]
    v = v.bytes if isinstance(v, uuid.UUID) and not text else format(v, "f") if isinstance(v, Decimal) else v
    return str(v) if text and v is not None else v


def hashable(v):
    return tuple(map(hashable, v)) if isinstance(v, (list, array)) else v


def resolve_type(conn, oid):
    """(is_array, type name) with domains unwrapped, of the element for an array; every enum is "enum"."""
    is_array = False
    while True:
        name, typtype, base, elem, category = conn.execute(
            "SELECT typname, typtype, typbasetype, typelem, typcategory FROM pg_type WHERE oid = %s", (oid,)).fetchone()
        if typtype == "d":
            oid = base
        elif category == "A" and elem and not is_array:
            is_array, oid = True, elem
        else:
            return is_array, "enum" if typtype == "e" else name


def plan_column(is_array, name, col):
    """(category, SQL expressions to select) for one column; `col` is its SQL expression."""
    if name in ("float4", "float8"):
        cat, send = name.replace("float", "f"), sql.SQL(f"{name}send")
        if not is_array:
            return cat, [sql.SQL("{}({})").format(send, col)]
        each = sql.SQL("ARRAY(SELECT {}(x) FROM unnest({}) WITH ORDINALITY u(x, i) ORDER BY i)").format(send, col)
        return cat + "[]", [sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(col, each)]
    if is_array:
        if name in NATIVE:
            return "plain", [sql.SQL("{}::{}[]").format(col, sql.Identifier(name))]
        return "text", [sql.SQL("{}::text[]").format(col)]
    if name in ("vector", "halfvec"):
        return name, [sql.SQL(f"{name}_send({{}})").format(col)]
    if name in ("json", "jsonb"):
        return "json", [col, sql.SQL("{}::text").format(col)]
    micros = "(extract(epoch FROM {c}) * 1000000)::int8::text"
    if name in ("timestamp", "timestamptz", "date"):
        finite = "({c} - DATE '1970-01-01')::text" if name == "date" else micros
        return name, [sql.SQL(f"CASE WHEN isfinite({{c}}) THEN {finite} ELSE {{c}}::text END").format(c=col)]
    if name == "time":
        return "time", [sql.SQL(micros).format(c=col)]
    return ("plain", [col]) if name in NATIVE else ("text", [sql.SQL("{}::text").format(col)])


def load_source(cat, vals):
    """Selected source values of one column to the normal form."""
    v = vals[0]
    if cat == "json":
        return None if vals[1] is None else json_form(vals[1], v)
    if v is None or cat in ("plain", "text"):
        return norm(v)
    if cat in ("f4", "f8"):
        return int.from_bytes(v, "big")
    if cat in ("f4[]", "f8[]"):
        return [None if b is None else int.from_bytes(b, "big") for b in v]
    if cat in ("vector", "halfvec"):  # uint16 dim, uint16 unused, dim x big-endian float4 (halfvec: float16)
        dim = int.from_bytes(v[:2], "big")
        if cat == "vector":
            return array("I", struct.unpack(f">{dim}I", v[4:]))
        return array("I", struct.unpack(f"<{dim}I", struct.pack(f"<{dim}f", *struct.unpack(f">{dim}e", v[4:]))))
    return v  # timestamps, time, date: text of an integer


def d1_form(cat, v):
    """A source value (normal form) as D1 holds it (see --d1-form)."""
    if v is None or cat not in ("f4", "f8", "f4[]", "f8[]"):
        return v
    w = 32 if cat.startswith("f4") else 64
    exp = (1 << (w - 1)) - (1 << (23 if w == 32 else 52))  # exponent bits all ones
    frac = (1 << (23 if w == 32 else 52)) - 1
    nan = lambda b: (b & exp) == exp and (b & frac) != 0
    if cat in ("f4", "f8"):
        return None if nan(v) else 0 if v == 1 << (w - 1) else v
    return [None if b is None or (b & exp) == exp else b for b in v]


def load_parquet(cat, arr):
    """One Parquet column (a pyarrow Array) to the normal form; a str says why it cannot be compared."""
    t = arr.type
    if cat in FLOAT_CATS:
        want, bits = (pa.float64(), pa.uint64()) if FLOAT_CATS[cat] == 64 else (pa.float32(), pa.uint32())
        if cat in ("f4", "f8"):
            return arr.view(bits).to_pylist() if t == want else f"parquet type {t} is not {want}"
        if getattr(t, "value_type", None) != want:  # List, LargeList or FixedSizeList of want
            return f"parquet type {t} is not a list of {want}"
        if cat.endswith("[]"):
            return arr.view(pa.list_(bits)).to_pylist() if pa.types.is_list(t) else f"parquet type {t} is not a List"
        if arr.flatten().null_count:
            return "NULL elements in a vector column"
        if pa.types.is_fixed_size_list(t):  # arr.values ignores arr.offset, arr.offsets does not
            offs = [(arr.offset + i) * t.list_size for i in range(len(arr) + 1)]
        else:
            offs = arr.offsets.to_pylist()
        raw, base = memoryview(arr.values.buffers()[1]).cast("I"), arr.values.offset  # native-endian float32 bits
        valid = arr.is_valid().to_pylist()
        return [array("I", raw[base + offs[i] : base + offs[i + 1]]) if ok else None for i, ok in enumerate(valid)]
    if cat == "date":
        if t != pa.date32():
            return f"parquet type {t} is not date32"
        return [None if d is None else str(d) for d in arr.cast(pa.int32()).to_pylist()]
    if cat in ("timestamp", "timestamptz", "time"):
        if t.unit != "us" or (cat != "time" and (t.tz is not None) != (cat == "timestamptz")):
            return f"parquet type {t} is not {cat} in microseconds"
        return [None if v is None else str(v) for v in arr.cast(pa.int64()).to_pylist()]
    values = arr.to_pylist()
    if cat == "json":
        return [None if v is None else json_form(v) for v in values]
    return norm(values, text=cat == "text")


def show(cat, v, bits=True):
    """A value of a difference line: floats with their bits (hex), lists of floats without."""
    if v is None:
        return "NULL"
    if cat in ("f4[]", "f8[]", "vector", "halfvec") and not isinstance(v, int):
        return "[" + ", ".join(show(cat, b, False) for b in v) + "]"
    if cat in FLOAT_CATS:
        w = FLOAT_CATS[cat]
        f = struct.unpack("<d" if w == 64 else "<f", v.to_bytes(w // 8, "little"))[0]
        return (repr(f) if w == 64 else f"{f:.9g}") + (f"[0x{v:0{w // 4}x}]" if bits else "")
    return "\\x" + v.hex() if isinstance(v, bytes) else repr(v[0] if cat == "json" else v)


def show_pair(cat, p, s):
    """Both sides of a difference; of equally long float lists only the differing elements, with bits."""
    if cat in ("f4[]", "f8[]", "vector", "halfvec") and None not in (p, s) and len(p) == len(s):
        diff = [i for i in range(len(p)) if p[i] != s[i]][:5]
        return tuple(" ".join(f"[{i}]={show(cat, side[i])}" for i in diff) for side in (p, s))
    return short(show(cat, p)), short(show(cat, s))


class View:
    """One reader's rows of a table in the normal form, indexed by key, matched off against the source."""

    def __init__(self, reader, values, num_rows, cats, pk):
        self.reader, self.values, self.num_rows, self.cats, self.pk = reader, values, num_rows, cats, pk
        self.names = list(values)
        self.keycols = pk or self.names  # without a primary key, whole rows are matched
        self.index = {}
        for i in range(num_rows):
            self.index.setdefault(self.key(lambda n: values[n][i]), []).append(i)
        self.left = Counter({key: 1 if pk else len(rows) for key, rows in self.index.items()})

    def key(self, get):
        return tuple(hashable(get(k)) for k in self.keycols)

    def key_text(self, key):
        if not self.pk:
            return "<no primary key>"
        return ", ".join(short(show(self.cats[k], v), 60) for k, v in zip(self.keycols, key))

    def row_text(self, get):
        return "{" + short(", ".join(f"{n}={short(show(self.cats[n], get(n)), 40)}" for n in self.names)) + "}"

    def start(self, report):
        for key, rows in self.index.items():
            if self.pk and len(rows) > 1:
                report(self.key_text(key), "*", f"<{len(rows)} rows with this key>", "<1 row>", self.reader)

    def match(self, source, report):
        """Matches one source row (normal form, every column) with this reader's row of the same key."""
        key = self.key(source.get)
        if self.left[key] <= 0:
            report(self.key_text(key), "*", "<missing row>", self.row_text(source.get), self.reader)
            return
        self.left[key] -= 1
        i = self.index[key][0]
        for n in self.names:
            if self.values[n][i] != source[n]:
                report(self.key_text(key), n, *show_pair(self.cats[n], self.values[n][i], source[n]), self.reader)

    def finish(self, seen, report):
        for key, count in self.left.items():
            for i in self.index[key][-count:] if count > 0 else []:
                report(self.key_text(key), "*", self.row_text(lambda n: self.values[n][i]), "<missing row>", self.reader)
        if seen != self.num_rows:
            report("*", "*", f"{self.num_rows} rows", f"{seen} rows", self.reader)


def read_tables(files, readers, report):
    """[(reader, pyarrow Table)] of every reader that could read the files (the others are reported)."""
    if not files:  # an empty table has no files: nothing to read
        return [("no files", pa.table({}))]
    tables = []
    for reader in readers:
        try:
            tables.append((reader, archive_readers.read(reader, files)))
        except archive_readers.ReaderError as e:
            report("*", "*", f"<unreadable: {short(str(e))}>", "<table>", reader)
    return tables


def compare_table(conn, archive, entry, readers, d1=False):
    """Prints the differences of one table for every reader; returns (number of differences, source rows)."""
    schema, name, columns, pk = entry["schema"], entry["name"], entry["columns"], list(entry["primary_key"])
    qname, diffs = f"{schema}.{name}", []

    def report(key, column, p, s, reader=None):
        diffs.append(f"{qname}{f' [{reader}]' if reader else ''} key={key} column={column}: parquet={p} source={s}")
        print(diffs[-1])

    oid = conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid", (schema, name)).fetchone()[0]
    files = sorted((archive / (name if schema == "public" else qname)).glob("*.parquet"))
    tables = read_tables(files, readers, report)
    if oid is None:
        report("*", "*", "<table>", "<no such table>")
        return len(diffs), 0
    pg_types = dict(conn.execute(
        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,)))

    cats, exprs, slices = {}, [], {}
    for c in columns:
        cname, col = c["name"], sql.Identifier(c["name"])
        if cname not in pg_types:
            report("*", cname, "<column>", "<no such column>")
            continue
        type_oid = pg_types[cname]
        if c.get("cast"):  # read as pgflare read it
            col = sql.SQL("({})::{}").format(col, sql.SQL(c["cast"]))
            type_oid = conn.execute("SELECT %s::regtype::oid", (c["cast"],)).fetchone()[0]
        cats[cname], select = plan_column(*resolve_type(conn, type_oid), col)
        slices[cname] = slice(len(exprs), len(exprs) + len(select))
        exprs += select
    views = []
    for reader, table in tables:
        values = {}
        for cname, cat in cats.items():
            if cname not in table.column_names:  # no files at all: an empty table
                got = "no such column" if files else []
            else:
                got = load_parquet(cat, table.column(cname).combine_chunks())
            if isinstance(got, str):
                report("*", cname, f"<{got}>", f"<{cat}>", reader)
            else:
                values[cname] = got
        if values and all(k in values for k in pk):
            views.append(View(reader, values, table.num_rows, cats, pk))
    if not views:
        return len(diffs), 0
    for view in views:
        view.start(report)
    seen = 0
    with conn.cursor(name="compare_archive") as src:
        src.itersize = 200
        src.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), sql.Identifier(schema, name)))
        for seen, row in enumerate(src, 1):
            source = {n: load_source(cats[n], row[slices[n]]) for n in cats}
            if d1:
                source = {n: d1_form(cats[n], v) for n, v in source.items()}
            for view in views:
                view.match(source, report)
    for view in views:
        view.finish(seen, report)
    return len(diffs), seen


def main():
    ap = argparse.ArgumentParser(description="Compare a pgflare archive with its source, value by value.")
    ap.error = usage_error
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="source (default: $DATABASE_URL)")
    ap.add_argument("--archive", required=True, type=Path, help="archive folder (holds manifest.json)")
    ap.add_argument("--table", action="append", default=[], help="only this table (name or schema.name); repeatable")
    ap.add_argument("--d1-form", action="store_true",
                    help="compare with the source as D1 holds it (an archive made from Cloudflare)")
    ap.add_argument("--reader", action="append", choices=archive_readers.READERS, default=[],
                    help="read the files with this reader only (repeatable; default: all of them)")
    args = ap.parse_args()
    if not args.database_url:
        usage_error("no source: pass --database-url or set DATABASE_URL")
    try:
        tables = json.loads((args.archive / "manifest.json").read_text(encoding="utf-8"))["tables"]
        names = [{t["name"], f"{t['schema']}.{t['name']}"} for t in tables]
    except (OSError, ValueError, KeyError, TypeError) as e:
        usage_error(f"cannot read {args.archive / 'manifest.json'}: {e!r}")
    if unknown := set(args.table) - set().union(*names):
        usage_error(f"not in the archive: {', '.join(sorted(unknown))}")
    tables = [t for t, n in zip(tables, names) if not args.table or n & set(args.table)]
    readers = args.reader or archive_readers.READERS
    try:
        conn = psycopg.connect(args.database_url, application_name="compare_archive")
    except psycopg.Error as e:
        usage_error(f"cannot connect to '{args.database_url}': {e}")
    conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    try:
        with conn:
            results = [compare_table(conn, args.archive, entry, readers, args.d1_form) for entry in tables]
    except psycopg.Error as e:
        usage_error(f"database error: {e}")
    diffs, rows = sum(r[0] for r in results), sum(r[1] for r in results)
    read_with = ", ".join(f"{r} {archive_readers.version(r)}" for r in readers)
    print(f"compare_archive: {len(tables)} tables, {rows} rows, {diffs} differences (read with {read_with})")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
