#!/usr/bin/env python3
"""The crate's dependency map, from its `crate::` and `super::` paths.

Prints which top-level folders of src/ use which, the cycles between them,
and every import from one job folder into another; exits 1 if a job
imports another job (scripts/test.sh runs it), and with `--cycles` also if
two folders (outside the emulator's own room) need each other.

Usage: scripts/deps.py [--files] [--cycles] [--dot]
  --files   also report cycles between files (strongly connected groups)
  --cycles  fail on cycles too (folders, and files with --files)
  --dot     print the folder graph in Graphviz dot form and exit

The parse is textual, on purpose: it reads `use crate::...` (brace groups
included), inline `crate::a::b` paths and `super::` paths, after removing
comments and string literals. `mod x;` lines are not dependencies. Test
code is left out (`#[cfg(test)]` items and the files they declare): a
test may use anything, the emulator above all.
Standard library only, so that it runs anywhere `scripts/test.sh` does.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
# Jobs: leaves over the shared middle; none may import another.
JOBS = {"load", "sync", "verify", "archive", "restore", "follow", "reconcile", "doctor", "init"}
# Folders whose inside is its own affair (cycles inside are allowed).
ROOMS = {"emulator"}


def module_of(path: Path) -> list[str]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def strip(text: str) -> str:
    """Removes comments, char and string literals (raw strings included)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or (c == "'" and re.match(r"'\\[xu]", text[i:i + 3])):
            j = text.find("'", i + 2)
            i = n if j < 0 else j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    # `x as y` loses its alias first: without spaces `as` is not a word.
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p2 for p in parts if p for p2 in expand_use(prefix + p)]


def paths_in(text: str, here: list[str]) -> set[tuple[str, ...]]:
    """Absolute module paths this file (module `here`) names."""
    found = set()

    def resolve(path: str):
        segs = [s for s in path.split("::") if s]
        if not segs:
            return
        if segs[0] == "crate":
            found.add(tuple(segs[1:]))
        elif segs[0] == "super":
            # `super` is the parent of this module, whether the module is
            # `x.rs` or `x/mod.rs`.
            base = list(here)
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            found.add(tuple(base + segs))
        elif segs[0] == "self":
            found.add(tuple(here + segs[1:]))

    for m in re.finditer(r"\buse\s+((?:crate|super|self)\s*::[^;]*);", text):
        for p in expand_use(m.group(1)):
            resolve(p)
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:\s*::\s*\w+)+)", text):
        resolve(re.sub(r"\s+", "", m.group(1)))
    return found


def without_tests(text: str) -> str:
    """Drops `#[cfg(test)]` items: a `mod x { ... }` block or one line."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        j = m.end()
        brace, semi = text.find("{", j), text.find(";", j)
        if semi >= 0 and (brace < 0 or semi < brace):
            i = semi + 1
            continue
        depth, k = 0, brace
        while k < len(text):
            depth += text[k] == "{"
            depth -= text[k] == "}"
            k += 1
            if depth == 0:
                break
        i = k
    out.append(text[i:])
    return "".join(out)


def test_only_files() -> set:
    """Files declared by `#[cfg(test)] mod x;`."""
    found = set()
    for path in SRC.rglob("*.rs"):
        decl = r"#\[cfg\(test\)\]\s*((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;"
        for m in re.finditer(decl, path.read_text()):
            at = re.search(r'#\[path\s*=\s*"([^"]+)"\]', m.group(1))
            if at:
                found.add((path.parent / at.group(1)).resolve())
                continue
            base = path.parent if path.name in ("mod.rs", "lib.rs", "main.rs") else path.with_suffix("")
            for cand in (base / f"{m.group(2)}.rs", base / m.group(2) / "mod.rs"):
                found.add(cand.resolve())
    # The modules a test-only module declares are test-only too.
    for f in list(found):
        below = f.parent if f.name == "mod.rs" else f.with_suffix("")
        if below.is_dir():
            found.update(x.resolve() for x in below.rglob("*.rs"))
    return found


def build():
    files = {}
    tests = test_only_files()
    for path in sorted(SRC.rglob("*.rs")):
        if path.relative_to(SRC).parts[0] == "bin" or path.resolve() in tests:
            continue
        files[tuple(module_of(path))] = path
    # Which file defines a module path: the longest prefix that is a file.
    def file_for(mod: tuple[str, ...]):
        for k in range(len(mod), 0, -1):
            if mod[:k] in files:
                return mod[:k]
        return None

    # A `#[path = "f.rs"] mod name;` file is module `name` of its declarer,
    # whatever its file name says (its `super::` is the declarer's).
    modules = {}
    for mod, path in files.items():
        for m in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', path.read_text()):
            target = (path.parent / m.group(1)).resolve()
            for k, v in files.items():
                if v.resolve() == target:
                    modules[k] = mod + (m.group(2),)

    edges = {}
    for mod, path in files.items():
        text = without_tests(strip(path.read_text()))
        targets = set()
        for p in paths_in(text, list(modules.get(mod, mod))):
            f = file_for(p)
            if f is not None and f != mod:
                targets.add(f)
        edges[mod] = targets
    return files, edges


def top(mod: tuple[str, ...]) -> str:
    return mod[0] if mod else "(lib)"


def scc(nodes, succ):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main(argv):
    files, edges = build()
    folder = {}
    why = {}
    for a, ts in edges.items():
        for b in ts:
            ta, tb = top(a), top(b)
            if ta != tb and a and b:
                folder.setdefault(ta, set()).add(tb)
                why.setdefault((ta, tb), []).append(("/".join(a), "/".join(b)))
    if "--dot" in argv:
        print("digraph pgflare {")
        for a in sorted(folder):
            for b in sorted(folder[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    bad = 0
    print("folders and what they use:")
    for a in sorted(folder):
        print(f"  {a:<12} -> {', '.join(sorted(folder[a]))}")
    jobs = [(a, b) for (a, b) in why if a in JOBS and b in JOBS]
    print(f"\njob -> job imports: {len(jobs)}")
    for a, b in sorted(jobs):
        bad = 1
        for x, y in why[(a, b)][:6]:
            print(f"  {a} -> {b}: {x} uses {y}")
    cycles = [c for c in scc(sorted(folder), folder)]
    print(f"\ncycles between folders: {len(cycles)}")
    strict = "--cycles" in argv
    for c in cycles:
        bad |= strict
        print("  " + " <-> ".join(sorted(c)))
        members = set(c)
        for (a, b), pairs in sorted(why.items()):
            if a in members and b in members:
                x, y = pairs[0]
                print(f"      {a} -> {b} ({len(pairs)}x, e.g. {x} uses {y})")
    if "--files" in argv:
        comps = scc(sorted(edges), edges)
        comps = [c for c in comps if not all(top(m) in ROOMS for m in c)]
        print(f"\ncycles between files (outside {', '.join(sorted(ROOMS))}): {len(comps)}")
        for c in comps:
            bad |= strict
            print("  " + " <-> ".join(sorted("/".join(m) or "lib" for m in c)))
    print("\nscripts/deps.py: " + ("FAILED" if bad else "ok"))
    return int(bad)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
