#!/usr/bin/env python3
"""The module graph of src/: which file imports which, and its circles.

    python3 ci/module_graph.py            # prints every circle (strongly connected component)
    python3 ci/module_graph.py --check    # the same, and exits 1 if there is one
    python3 ci/module_graph.py --edges    # every edge, `from -> to`
    python3 ci/module_graph.py --files    # (with any of the above) one node per file

A node is a top-level module (`driver`, `executor`, `context`, ...; `--files`: a source file).
There is an edge from A to B when A names an item that B defines:
through `use`, or a path written out (`crate::driver::op::Op`, `super::cvt`). Paths go through
re-exports (`pub use`, `pub(crate) use`) to the file that defines the item, so `crate::spawn`
is an edge to src/event_loop.rs, not to lib.rs. `mod x;` declarations are not edges (a parent
holds its children; it imports them only when it names their items). Comments and doc comments
are ignored; so are tests (`#[cfg(test)] mod ...` blocks at the end of a file are left out).
"""

import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_files():
    """Maps module paths (tuples) to files."""
    mods = {}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), SRC)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods[tuple(parts)] = rel
    return mods


def strip(text):
    """Source without comments, string and char contents, and test modules."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == '"':
            # Raw strings (r"..", r#".."#) are rare here and hold no quote; plain ones may
            # escape one.
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^'\\])'", text[i : i + 4]):
            # A char literal ('"', '\''); a lifetime has no closing quote.
            i = text.index("'", i + 2 if text[i + 1] == "\\" else i + 1) + 1
            out.append("' '")
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    cut = re.search(r"#\[cfg\((?:all\()?test[^\]]*\]\s*mod\s+\w+", text)
    if cut:
        text = text[: cut.start()]
    return text


def expand(tree):
    """Expands a use tree (`a::{b, c::{d, e}}`) into paths."""
    tree = tree.strip()
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix = tree[:start].rstrip(":").strip()
                inner, items, level, last = tree[start + 1 : i], [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    elif c == "," and level == 0:
                        items.append(inner[last:j])
                        last = j + 1
                items.append(inner[last:])
                out = []
                for item in items:
                    if item.strip():
                        for p in expand(item):
                            out.append(prefix + "::" + p if prefix else p)
                return out
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    return [tree.replace(" ", "")]


def inline_depths(text):
    """For an offset into `text`: how many inline modules (`mod x { .. }`) enclose it."""
    spans = []
    for m in re.finditer(r"\bmod\s+\w+\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        spans.append((m.end(), i))
    return lambda pos: sum(1 for a, b in spans if a <= pos < b)


def uses(text):
    """Every path the file names: (path segments, is a re-export, inline module depth)."""
    depth = inline_depths(text)
    found = []
    for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
        for p in expand(m.group(2)):
            found.append((p.split("::"), bool(m.group(1)), depth(m.start())))
    for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text):
        found.append((m.group(1).split("::"), False, depth(m.start())))
    return found


def absolute(module, segs, inline=0):
    """Resolves `crate::`, `super::`, `self::` against the module the path is written in
    (`inline`: how many inline modules inside the file enclose it; a `super` leaves those
    first, and a path that stays inside one names the file's own items)."""
    if segs[0] == "crate":
        return list(segs[1:])
    base = list(module)
    rest = list(segs)
    while rest and rest[0] in ("super", "self"):
        if rest.pop(0) == "super":
            if inline:
                inline -= 1
            else:
                base = base[:-1]
    return base + rest


# `--files`: one node per source file. By default one node per top-level module (`driver`,
# `executor`, `fs`, ...: a directory or a file under src/), the layers the design talks about;
# files inside one module may name each other both ways.
TOP = "--files" not in sys.argv


def top(path):
    """The top-level module a file belongs to: `driver/uring/wait.rs` -> `driver`."""
    first = path.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def main():
    mods = module_files()
    texts = {m: strip(open(os.path.join(SRC, f)).read()) for m, f in mods.items()}
    # Re-exports: module -> {name: absolute path}.
    reexports = {m: {} for m in mods}
    for m, text in texts.items():
        for segs, is_pub, inline in uses(text):
            if is_pub and segs[0] in ("crate", "super", "self") or (is_pub and tuple(segs[:1]) in mods):
                path = absolute(m, segs, inline) if segs[0] in ("crate", "super", "self") else list(m) + segs
                name = path[-1]
                if name != "*":
                    reexports[m][name] = path

    def resolve(path, seen=0):
        """The module that defines what `path` names."""
        mod = ()
        for i, seg in enumerate(path):
            if mod + (seg,) in mods:
                mod = mod + (seg,)
                continue
            target = reexports.get(mod, {}).get(seg)
            if target and seen < 8 and target != path[: i + 1]:
                return resolve(target + path[i + 1 :], seen + 1)
            return mod
        return mod

    edges = set()
    for m, text in texts.items():
        for segs, _, inline in uses(text):
            if segs[0] in ("crate", "super", "self"):
                path = absolute(m, segs, inline)
            elif m + (segs[0],) in mods:
                path = list(m) + segs  # `use fd::SharedFd;` in a parent names its child
            else:
                continue  # std, a dependency, or a local name
            target = resolve(path)
            # A path into a module's own children (`self::x`, or `mod.rs` naming a child) is
            # an edge too; a path to itself is not.
            if target != m and target in mods:
                if TOP:
                    a, b = top(mods[m]), top(mods[target])
                    if a != b:
                        edges.add((a, b))
                else:
                    edges.add((mods[m], mods[target]))

    if "--edges" in sys.argv:
        for a, b in sorted(edges):
            print(f"{a} -> {b}")
        return 0

    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
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
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    nodes = {top(f) for f in mods.values()} if TOP else set(mods.values())
    for v in sorted(nodes):
        if v not in index:
            strongconnect(v)
    if not sccs:
        what = "top-level modules" if TOP else "files"
        print(f"module graph: {len(nodes)} {what}, {len(edges)} edges, no circle")
        return 0
    for comp in sccs:
        inner = sorted((a, b) for a, b in edges if a in comp and b in comp)
        what = "top-level modules" if TOP else "files"
        print(f"circle of {len(comp)} {what}: {' '.join(comp)}")
        for a, b in inner:
            print(f"    {a} -> {b}")
    return 1 if "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
