"""Dumps the rows of a SQLite database with Python's own sqlite3 module
(independent of pgflare), for comparing two databases byte for byte.

Usage: sqlite_dump.py DB
Prints JSON: {"tables": {name: rows}, "rows": [...]}, where rows are the
INSERT statements of `Connection.iterdump()` (every value with its
storage class: integers, reals in full precision, text quoted, blobs as
X'..'), sorted, so that two databases holding the same rows in another
insertion order compare equal. pgflare's own bookkeeping tables
(`pgflare_*`: sync state, vector digests) and D1's/SQLite's internal ones
are left out: only the data tables are compared.
"""
import json
import sqlite3
import sys


def main():
    con = sqlite3.connect(sys.argv[1])
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%' AND name NOT LIKE 'pgflare_%' ORDER BY name")]
    counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    rows = sorted(line for line in con.iterdump()
                  if line.startswith("INSERT INTO") and any(line.startswith(f'INSERT INTO "{t}"') for t in tables))
    print(json.dumps({"tables": counts, "rows": rows}))


if __name__ == "__main__":
    main()
