"""Applies pgflare's D1 SQL batch files to a fresh SQLite database with
Python's own sqlite3 module (an engine independent of pgflare), checking
on the way what D1 demands of a file: every statement under 100,000
bytes and no transaction statement. Statements are split with
sqlite3.complete_statement, SQLite's own tokenizer.

Usage: apply_d1_sql.py DB SCHEMA_SQL DIR [--dump TABLE]
With SCHEMA_SQL `-`, DIR must hold a manifest.json (the load `files`
target): its `apply_order` (schema.sql first) is followed, with foreign
keys enforced as D1 enforces them.
Prints JSON: {"statements", "max_statement_bytes", "transaction_statements",
"counts": {table: rows}, "dump": [[column values...], ...] (with --dump)}.
"""
import glob
import json
import os
import sqlite3
import sys

TRANSACTION_WORDS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END")


def statements(text):
    buf = []
    for line in text.splitlines(keepends=True):
        buf.append(line)
        joined = "".join(buf)
        if sqlite3.complete_statement(joined):
            yield joined
            buf = []
    # Comment lines after the last statement (the schema's notes on what
    # D1 cannot have) are no statement: SQLite, D1 and wrangler skip them.
    rest = [line.strip() for line in buf]
    if any(line and not line.startswith("--") for line in rest):
        raise SystemExit("apply_d1_sql: file ends inside a statement")


def main():
    args = sys.argv[1:]
    dump = None
    if "--dump" in args:
        i = args.index("--dump")
        dump = args[i + 1]
        del args[i:i + 2]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    db_path, schema, folder = args
    db = sqlite3.connect(db_path, isolation_level=None)
    if schema == "-":
        manifest = json.load(open(os.path.join(folder, "manifest.json"), encoding="utf-8"))
        files = [os.path.join(folder, p) for p in manifest["apply_order"]]
        db.execute("PRAGMA foreign_keys = ON")
    else:
        db.executescript(open(schema, encoding="utf-8").read())
        files = sorted(glob.glob(os.path.join(folder, "**", "*.sql"), recursive=True))
    count = biggest = tx = 0
    for f in files:
        # newline="" keeps CR LF inside string literals as written.
        text = open(f, encoding="utf-8", newline="").read()
        for stmt in statements(text):
            count += 1
            biggest = max(biggest, len(stmt.encode("utf-8")))
            if stmt.lstrip().upper().startswith(TRANSACTION_WORDS):
                tx += 1
        # D1 runs a file in one transaction: do the same.
        db.executescript("BEGIN;\n" + text + "\nCOMMIT;")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {
        "files": len(files),
        "statements": count,
        "max_statement_bytes": biggest,
        "transaction_statements": tx,
        "counts": {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables},
    }
    if dump:
        rows = db.execute(f'SELECT * FROM "{dump}"').fetchall()
        out["dump"] = [[v.hex() if isinstance(v, bytes) else v for v in r] for r in rows]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
