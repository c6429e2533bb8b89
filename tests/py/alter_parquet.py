"""Alters one value in a Parquet file with pyarrow (an independent writer),
keeping the schema, so tests can prove that `pgflare archive verify` notices.

Usage: alter_parquet.py FILE COLUMN ROW NEW_TEXT_VALUE
"""
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    path, column, row, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    table = pq.read_table(path)
    idx = table.schema.get_field_index(column)
    values = table.column(idx).to_pylist()
    values[row] = value
    new = pa.array(values, type=table.schema.field(idx).type)
    table = table.set_column(idx, table.schema.field(idx), new)
    pq.write_table(table, path, compression="zstd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
