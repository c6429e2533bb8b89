"""The Parquet readers a pgflare archive is tested with: pyarrow, DuckDB, polars.

    read(reader, files) -> pyarrow.Table

Each reader opens all Parquet files of one table on its own (its own decoder,
not pyarrow's), and its columns are converted losslessly to the types pyarrow
reads from the files, so that one comparison (tests/py/compare_archive.py)
checks every reader value by value. The conversions are pyarrow's safe casts
(they fail rather than drop digits or bits) plus UUID text to its 16 bytes:
DuckDB gives a fixed-size vector as a variable list, time zones as
"Etc/UTC", UUIDs as text; polars gives large strings/lists/binaries, time
in nanoseconds and UUIDs as plain binary. A reader that cannot read the
files, or whose values do not convert, raises ReaderError with its message.
"""

import uuid

import pyarrow as pa
import pyarrow.parquet as pq

READERS = ("pyarrow", "duckdb", "polars")


class ReaderError(Exception):
    pass


def version(reader):
    return __import__(reader).__version__


def _duckdb(files):
    import duckdb

    with duckdb.connect() as con:  # in memory, closed with its threads
        return con.sql("SELECT * FROM read_parquet($files)", params={"files": [str(f) for f in files]}).to_arrow_table()


def _polars(files):
    import polars as pl

    return pl.read_parquet([str(f) for f in files]).to_arrow()


def _raw(reader, files):
    if reader == "pyarrow":
        return pq.read_table([str(f) for f in files])
    return {"duckdb": _duckdb, "polars": _polars}[reader](files)


def _conform(arr, want):
    """One column in the type `want` (pyarrow's view of the file), losslessly."""
    if isinstance(want, pa.BaseExtensionType):
        want = want.storage_type
    if isinstance(arr.type, pa.BaseExtensionType):
        arr = arr.storage
    if arr.type == want:
        return arr
    if want == pa.binary(16) and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pa.array([None if s is None else uuid.UUID(s).bytes for s in arr.to_pylist()], want)
    return arr.cast(want)  # safe: raises rather than losing data


def read(reader, files):
    """All rows of `files` as read by `reader`, in pyarrow's types of the files."""
    try:
        # A panic in a Rust reader (polars) arrives as a BaseException.
        table = _raw(reader, files)
    except BaseException as e:  # noqa: BLE001 - reported, not swallowed
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise ReaderError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    schema = pq.read_schema(str(files[0]))
    if sorted(table.column_names) != sorted(schema.names):
        raise ReaderError(f"columns {table.column_names}, the files have {schema.names}")
    columns = []
    for field in schema:
        arr = table.column(field.name).combine_chunks()
        try:
            columns.append(_conform(arr, field.type))
        except (pa.ArrowException, ValueError, TypeError) as e:
            raise ReaderError(f"column {field.name}: {arr.type} does not convert to {field.type}: {e}") from e
    return pa.Table.from_arrays(columns, names=schema.names)
