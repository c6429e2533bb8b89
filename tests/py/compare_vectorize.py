"""Compares what reached Vectorize (NDJSON files, or an index read back
over its REST API) with the Postgres source, vector by vector, with
readers independent of pgflare (psycopg, json, urllib).

Usage:
  compare_vectorize.py PG_URL TABLE --vector COL [--id COL] [--metadata C1,C2]
      [--namespace COL] [--config PGFLARE_TOML] [--skip KEY1,KEY2]
      (--ndjson DIR | --api BASE_URL ACCOUNT INDEX) [--topk K --queries N]

--config reads the table's `vector_metadata_paths` from pgflare.toml and
expects each as a top-level property, by README's rules implemented here
anew: a missing path or JSON null is an absent property; a declared type
must match the JSON type; an array must hold only strings; an object is
spread under the property's name, keys joined by `_`. It also reads
`vector_metadata_flags`: a row whose array holds a listed value must have
the property column + separator + value set to true, and no other flag.

The API token is read from $CLOUDFLARE_API_TOKEN. Every row with a
non-NULL vector (and not in --skip) must be in the target exactly once,
with values equal as float32 bit patterns and metadata equal to the
source columns in their documented forms (NULL = absent key, timestamps
as D1's ISO text with microseconds, uuids as text, arrays as lists, json
as its value), and with --namespace the column's text as namespace (none
when NULL); rows with a NULL vector must be absent; nothing else may be
there. With --topk, the first N ids (in id order) are used as queries:
the index's top K must be the exact cosine order computed here from the
source values (ties in any order), and each query's own id must come
first. Prints JSON and exits 1 on any difference.
"""
import argparse
import datetime
import json
import math
import os
import http.client
import struct
import time
import sys
import urllib.error
import urllib.parse
import urllib.request

import psycopg


def f32(x):
    return struct.pack("<f", float(x))


def meta_form(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return v.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return [meta_form(x) for x in v]
    if hasattr(v, "hex") and v.__class__.__name__ == "UUID":
        return str(v)
    return v


def parse_path(text):
    """column.key."quoted.key" -> [column, key, quoted.key]"""
    out, i = [], 0
    while True:
        if text[i] == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(json.loads(text[i:j + 1]))
            i = j + 1
        else:
            j = text.find(".", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
        if i >= len(text):
            return out
        i += 1  # the '.'


def json_paths(config, table):
    import tomllib
    with open(config, "rb") as f:
        doc = tomllib.load(f)
    short = table.split(".", 1)[-1]
    for t in doc.get("tables", []):
        if t["name"] in (table, short):
            if t.get("vector_metadata_flatten") or t.get("vector_metadata_omit"):
                raise SystemExit("compare_vectorize.py checks vector_metadata_paths only")
            out = []
            for name, spec in sorted(t.get("vector_metadata_paths", {}).items()):
                path, ty = (spec, None) if isinstance(spec, str) else (spec["path"], spec.get("type"))
                out.append((name, parse_path(path), ty))
            return out
    return []


def flag_columns(config, table):
    """`vector_metadata_flags` of the table: [(column, separator, values)].
    A row's array holding a listed value gets the property column + sep +
    value = true (pgflare's README, "Filtering in Vectorize")."""
    import tomllib
    with open(config, "rb") as f:
        doc = tomllib.load(f)
    short = table.split(".", 1)[-1]
    for t in doc.get("tables", []):
        if t["name"] in (table, short):
            sep = t.get("vector_metadata_separator", "_")
            return [(c, sep, list(v)) for c, v in sorted(t.get("vector_metadata_flags", {}).items())]
    return []


def fits(v, ty):
    if v is None:
        return False
    if ty == "string":
        return isinstance(v, str)
    if ty == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if ty == "boolean":
        return isinstance(v, bool)
    if isinstance(v, list):
        return all(isinstance(x, str) for x in v)
    return True


def add_path(meta, name, v, ty):
    if isinstance(v, dict) and ty is None:
        for k in sorted(v):
            add_path(meta, f"{name}_{k}", v[k], None)
    elif fits(v, ty) and name not in meta:
        meta[name] = v


def same_meta(want, got):
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and (want == got or f32(want) == f32(got))
    return want == got


def api(base, account, index, path, body=None):
    url = f"{base}/accounts/{account}/vectorize/v2/indexes/{index}/{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    req.add_header("Authorization", "Bearer " + os.environ["CLOUDFLARE_API_TOKEN"])
    if data:
        req.add_header("Content-Type", "application/json")
    # The emulator may inject 5xx answers and dropped connections: retry those.
    for attempt in range(20):
        try:
            with urllib.request.urlopen(req) as r:
                env = json.load(r)
            break
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == 19:
                raise SystemExit(f"{path}: HTTP {e.code}: {e.read()[:500]!r}")
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
            if attempt == 19:
                raise
        time.sleep(0.05)
    if not env.get("success"):
        raise SystemExit(f"{path}: {env.get('errors')}")
    return env["result"]


def read_api(base, account, index):
    ids, cursor = [], None
    while True:
        q = "list?count=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = api(base, account, index, q)
        ids += [v["id"] for v in page["vectors"]]
        cursor = page.get("nextCursor")
        if not page.get("isTruncated") or not cursor:
            break
    out = []
    for i in range(0, len(ids), 20):  # Vectorize returns at most 20 ids per call
        out += api(base, account, index, "get_by_ids", {"ids": ids[i:i + 20]})
    return out, len(ids)


def read_ndjson(folder):
    out = []
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith(".ndjson"):
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    out += [json.loads(line) for line in fh if line.strip()]
    return out, len(out)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pg_url")
    ap.add_argument("table")
    ap.add_argument("--vector", required=True)
    ap.add_argument("--id", default="id")
    ap.add_argument("--metadata", default="")
    ap.add_argument("--namespace")
    ap.add_argument("--skip", default="")
    ap.add_argument("--config")
    ap.add_argument("--ndjson")
    ap.add_argument("--api", nargs=3, metavar=("BASE_URL", "ACCOUNT", "INDEX"))
    ap.add_argument("--topk", type=int, default=0)
    ap.add_argument("--queries", type=int, default=0)
    a = ap.parse_args()
    meta_cols = [c for c in a.metadata.split(",") if c]
    skip = {k for k in a.skip.split(",") if k}

    paths = json_paths(a.config, a.table) if a.config else []
    json_cols = sorted({p[0] for _, p, _ in paths})
    flags = flag_columns(a.config, a.table) if a.config else []

    pg = psycopg.connect(a.pg_url)
    pg.execute("SET TimeZone = 'UTC'")
    flag_cols = [c for c, _, _ in flags]
    cols = ", ".join(f'"{c}"' for c in meta_cols + json_cols + flag_cols)
    ns = f'"{a.namespace}"::text' if a.namespace else "NULL::text"
    sql = f'SELECT "{a.id}"::text, "{a.vector}"::text, {ns}' + (f", {cols}" if cols else "") + f" FROM {a.table}"
    source, namespaces, nulls = {}, {}, 0
    for row in pg.execute(sql):
        if row[1] is None:
            nulls += 1
            continue
        if row[0] in skip:
            continue
        values = [float(x) for x in row[1].strip("[]").split(",")]
        meta = {c: meta_form(v) for c, v in zip(meta_cols, row[3:]) if v is not None}
        roots = dict(zip(json_cols, row[3 + len(meta_cols):3 + len(meta_cols) + len(json_cols)]))
        held = row[3 + len(meta_cols) + len(json_cols):]
        for name, path, ty in paths:
            v = roots.get(path[0])
            for k in path[1:]:
                v = v.get(k) if isinstance(v, dict) else None
            add_path(meta, name, v, ty)
        for (col, sep, listed), arr in zip(flags, held):
            for v in listed:
                if arr and v in arr:
                    meta[f"{col}{sep}{v}"] = True
        source[row[0]] = (values, meta)
        namespaces[row[0]] = row[2]

    got, listed = read_ndjson(a.ndjson) if a.ndjson else read_api(*a.api)
    target, diffs = {}, []
    for v in got:
        if v["id"] in target:
            diffs.append({"id": v["id"], "kind": "duplicate"})
        target[v["id"]] = v
    for k in sorted(set(source) | set(target)):
        if k not in target:
            diffs.append({"id": k, "kind": "missing_in_vectorize"})
        elif k not in source:
            diffs.append({"id": k, "kind": "extra_in_vectorize"})
        else:
            want, meta = source[k]
            have = target[k]["values"]
            if len(want) != len(have) or any(f32(x) != f32(y) for x, y in zip(want, have)):
                diffs.append({"id": k, "kind": "values", "source": str(want[:4]), "vectorize": str(have[:4])})
            if a.namespace and target[k].get("namespace") != namespaces[k]:
                diffs.append({"id": k, "kind": "namespace", "source": namespaces[k],
                              "vectorize": target[k].get("namespace")})
            if meta_cols or paths or flags:
                hm = target[k].get("metadata") or {}
                if set(hm) != set(meta) or any(not same_meta(meta[c], hm[c]) for c in meta):
                    diffs.append({"id": k, "kind": "metadata", "source": repr(meta)[:200], "vectorize": repr(hm)[:200]})

    topk = []
    if a.topk and a.api:
        ids = sorted(source)[: a.queries]
        for q in ids:
            qv = source[q][0]
            exact = sorted(((cosine(qv, v), i) for i, (v, _) in source.items()), key=lambda s: (-s[0], s[1]))
            got_m = api(*a.api, "query", {"vector": qv, "topK": a.topk, "returnValues": False, "returnMetadata": "none"})
            got_ids = [m["id"] for m in got_m["matches"]]
            # Equal scores may come in any order: compare by score rank groups.
            want_ids = [i for _, i in exact[: a.topk]]
            cutoff = exact[a.topk - 1][0] if len(exact) >= a.topk else -2
            allowed = {i for s, i in exact if s >= cutoff - 1e-12}
            ok = got_ids and got_ids[0] == q and len(got_ids) == min(a.topk, len(exact)) and set(got_ids) <= allowed
            ok = ok and all(
                abs(cosine(qv, source[g][0]) - s) <= 1e-9 for g, (s, _) in zip(got_ids, exact[: a.topk])
            )
            topk.append({"query": q, "ok": bool(ok), "want": want_ids[:5], "got": got_ids[:5]})
            if not ok:
                diffs.append({"id": q, "kind": "topk", "want": want_ids[:10], "got": got_ids[:10]})

    print(json.dumps({"source_vectors": len(source), "null_vectors": nulls, "target_vectors": len(target),
                      "listed": listed, "topk_queries": len(topk), "differences": diffs[:20],
                      "difference_count": len(diffs)}, indent=1))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
