"""Compares a D1 database (a SQLite file: the sqlite target, or the
emulator's store) with the Postgres source, row by row and value by value,
with readers independent of pgflare (psycopg and Python's sqlite3).

Usage: compare_d1.py PG_URL SQLITE_FILE TABLE [TABLE ...]
Each TABLE is `name[:d1_name][:col=d1col,...][:-excluded,...]`; columns
not excluded must exist in D1 under their (renamed) name.
Prints JSON {table: {"source_rows", "d1_rows", "differences": [...]}} and
exits 1 when any difference is found.

Value rules (how D1 stores each type, see the README): text as is; uuid
as lower-case text; integers as INTEGER; booleans as 0/1; float4 as REAL
equal as float32; timestamps as ISO text with microseconds (Z for
timestamptz); json/jsonb and arrays as JSON text; vectors as JSON arrays
equal element-wise as float32.
"""
import datetime
import decimal
import json
import math
import sqlite3
import struct
import sys

import psycopg


def f32(x):
    return struct.pack("<f", float(x))


def same_float32(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return f32(a) == f32(b)


def same(udt, pg, d1):
    if pg is None or d1 is None:
        return pg is None and d1 is None
    if udt in ("json", "jsonb"):
        return json.loads(d1) == pg
    if udt == "vector":
        want = [float(x) for x in pg.strip("[]").split(",")] if pg != "[]" else []
        got = json.loads(d1)
        return len(want) == len(got) and all(same_float32(a, b) for a, b in zip(want, got))
    if udt == "_float4":
        got = json.loads(d1)
        return len(pg) == len(got) and all(same_float32(a, b) for a, b in zip(pg, got))
    if udt.startswith("_"):
        got = json.loads(d1)
        norm = lambda v: [str(x) if isinstance(x, (datetime.date, decimal.Decimal)) else x for x in v]
        return norm(pg) == got if not udt in ("_uuid",) else [str(x) for x in pg] == got
    if udt == "timestamptz":
        return datetime.datetime.fromisoformat(d1.replace("Z", "+00:00")) == pg
    if udt == "timestamp":
        return datetime.datetime.fromisoformat(d1) == pg
    if udt == "uuid":
        return str(pg) == d1
    if udt == "float4":
        return same_float32(pg, d1)
    if udt == "float8":
        return pg == d1 or (math.isnan(pg) and math.isnan(d1))
    if udt == "bool":
        return int(pg) == d1
    if udt == "numeric":
        return decimal.Decimal(str(d1)) == pg
    if isinstance(pg, (int, str)):
        return pg == d1
    return str(pg) == str(d1)


def parse_spec(spec):
    parts = spec.split(":")
    name, d1, renames, excluded = parts[0], parts[0], {}, set()
    for p in parts[1:]:
        if not p:
            continue
        if p.startswith("-"):
            excluded |= set(p[1:].split(","))
        elif "=" in p:
            renames.update(dict(kv.split("=", 1) for kv in p.split(",")))
        else:
            d1 = p
    return name, d1, renames, excluded


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    pg = psycopg.connect(sys.argv[1])
    pg.execute("SET TimeZone = 'UTC'")
    lite = sqlite3.connect(sys.argv[2])
    out, bad = {}, False
    for spec in sys.argv[3:]:
        table, d1_table, renames, excluded = parse_spec(spec)
        cols = pg.execute(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table,),
        ).fetchall()
        cols = [(c, u) for c, u in cols if c not in excluded]
        key = pg.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (table,),
        ).fetchall()[0][0]
        select = ", ".join(f'"{c}"::text' if u == "vector" else f'"{c}"' for c, u in cols)
        src = {str(r[[c for c, _ in cols].index(key)]): r for r in pg.execute(f'SELECT {select} FROM "{table}"')}
        d1cols = ", ".join('"' + renames.get(c, c) + '"' for c, _ in cols)
        dst = {str(r[[c for c, _ in cols].index(key)]): r for r in lite.execute(f'SELECT {d1cols} FROM "{d1_table}"')}
        diffs = []
        for k in sorted(set(src) | set(dst)):
            if k not in dst:
                diffs.append({"key": k, "kind": "missing_in_d1"})
            elif k not in src:
                diffs.append({"key": k, "kind": "extra_in_d1"})
            else:
                for i, (c, u) in enumerate(cols):
                    if not same(u, src[k][i], dst[k][i]):
                        diffs.append({"key": k, "kind": "value", "column": c,
                                      "source": repr(src[k][i])[:120], "d1": repr(dst[k][i])[:120]})
        bad |= bool(diffs)
        out[table] = {"source_rows": len(src), "d1_rows": len(dst), "differences": diffs[:20],
                      "difference_count": len(diffs)}
    print(json.dumps(out, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
