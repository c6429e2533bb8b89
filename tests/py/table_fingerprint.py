"""Fingerprints one table of a pgflare archive with pyarrow (independently
of pgflare), for the snapshot-consistency tests.

Usage: table_fingerprint.py ARCHIVE_DIR TABLE KEY_COLUMN TEXT_COLUMN

Prints JSON: {"rows": N, "md5": md5 of "key||text" joined by "," in key
order (the same as Postgres's md5(string_agg(id::text || content, ','
ORDER BY id::text))), "broken_pairs": how many "pair-N" text values do not
occur exactly twice}.
"""
import collections
import glob
import hashlib
import json
import os
import sys
import uuid

import pyarrow.parquet as pq


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    archive, table, key, text = sys.argv[1:]
    files = sorted(glob.glob(os.path.join(archive, table, "*.parquet")))
    rows = []
    for f in files:
        t = pq.read_table(f, columns=[key, text])
        for k, v in zip(t.column(key).to_pylist(), t.column(text).to_pylist()):
            if isinstance(k, bytes):
                k = uuid.UUID(bytes=k)
            rows.append((str(k), v))
    rows.sort()
    joined = ",".join(k + v for k, v in rows)
    pairs = collections.Counter(v for _, v in rows if v.startswith("pair-"))
    print(json.dumps({
        "rows": len(rows),
        "md5": hashlib.md5(joined.encode("utf-8")).hexdigest(),
        "pairs": len(pairs),
        "broken_pairs": sum(1 for c in pairs.values() if c != 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
