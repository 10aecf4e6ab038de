#!/usr/bin/env python3
"""The house rule, checked: imports between top-level modules only point down the floors.

Reads every `crate::` path in src/ (use lines, `use crate::{a, b::c}` groups spanning
lines, and inline paths such as `crate::protocol::hex::hex(..)`), test modules included,
and fails when a module imports one on a higher floor, when two modules of one floor import
each other (a circle), or when the submodules of one module do (e.g. protocol/der.rs and
protocol/oid.rs). The floors are those of src/lib.rs and docs/architecture.md.

    python3 .ci/floors.py          # check; exit 1 with every offending import listed
    python3 .ci/floors.py --graph  # also print the module graph
"""
import collections
import os
import re
import sys

# Bottom to top. Modules on one floor may import each other as long as no circle forms.
FLOORS = [
    ["protocol"],
    ["error", "backoff", "clock", "serial", "outcome", "pki", "client", "secret", "web"],
    ["signer"],
    ["audit"],
    ["policy"],
    ["pipeline"],
    ["frontend", "admin"],
    ["config"],
    ["cli", "fuzzing"],
]
# As docs/architecture.md numbers them: pipeline and frontend share floor 6, pipeline below.
LABELS = ["1", "2", "3", "4", "5", "6 (below frontend)", "6", "7", "8"]
FLOOR = {m: i for i, ms in enumerate(FLOORS) for m in ms}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def top_module(path):
    rel = os.path.relpath(path, ROOT)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_of(line):
    """The line without its `//` comment and string literal contents."""
    out, i, in_str = [], 0, False
    while i < len(line):
        c = line[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"' and not (i > 0 and line[i - 1] == "'" and line[i + 1 : i + 2] == "'"):
            in_str = True
        elif line.startswith("//", i):
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def group_names(text):
    """Top-level names of a `{a, b::c, d::{e, f}}` group (text after `crate::{`), and
    whether the group closed on this text."""
    names, depth = [], 1
    for t in re.finditer(r"[{}]|\b([a-z_][a-z0-9_]*)\b", text):
        if t.group(0) == "{":
            depth += 1
        elif t.group(0) == "}":
            depth -= 1
            if depth == 0:
                return names, True
        elif depth == 1:
            prev = text[: t.start()].rstrip()
            if prev == "" or prev.endswith((",", "{")):
                names.append(t.group(1))
    return names, False


def imports(path):
    """(line number, top-level module) for every crate:: path in the file."""
    found = []
    group = None  # (first line, text so far) of a `use crate::{` spanning lines
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = code_of(raw)
            if group is not None:
                text = group[1] + " " + line
                names, closed = group_names(text)
                if closed:
                    found.extend((group[0], m) for m in names)
                    group = None
                else:
                    group = (group[0], text)
                continue
            for m in re.finditer(r"\bcrate::(\{|[a-z_][a-z0-9_]*)", line):
                if m.group(1) != "{":
                    found.append((n, m.group(1)))
                    continue
                names, closed = group_names(line[m.end() :])
                if closed:
                    found.extend((n, name) for name in names)
                else:
                    group = (n, line[m.end() :])
    return found


def circles(graph):
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(comp)

    for v in list(graph):
        if v not in index:
            strongconnect(v)
    return found


def submodule_edges():
    """{top: {(child, sibling): [file:line]}}: imports between the direct submodules of each
    top-level module, through `crate::top::sibling` or, in the child's own root file,
    `super::sibling` (the parent's mod.rs is not a child)."""
    result = {}
    for top in sorted(os.listdir(ROOT)):
        d = os.path.join(ROOT, top)
        if not os.path.isdir(d):
            continue
        kids = {}
        for name in os.listdir(d):
            path = os.path.join(d, name)
            if name.endswith(".rs") and name != "mod.rs":
                kids[name[:-3]] = [path]
            elif os.path.isdir(path):
                kids[name] = [os.path.join(dp, f) for dp, _, fs in os.walk(path) for f in fs
                              if f.endswith(".rs")]
        edges = collections.defaultdict(list)
        for kid, files in kids.items():
            own_roots = {os.path.join(d, kid + ".rs"), os.path.join(d, kid, "mod.rs")}
            for path in files:
                with open(path, encoding="utf-8") as f:
                    for n, raw in enumerate(f, 1):
                        line = code_of(raw)
                        names = re.findall(rf"\bcrate::{top}::([a-z_][a-z0-9_]*)", line)
                        if path in own_roots:
                            names += re.findall(r"(?<![:\w])super::([a-z_][a-z0-9_]*)", line)
                            for group in re.findall(r"(?<![:\w])super::\{([^}]*)\}", line):
                                names += re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group)
                        for name in names:
                            if name in kids and name != kid:
                                edges[(kid, name)].append(f"{os.path.relpath(path, os.path.join(ROOT, '..'))}:{n}")
        result[top] = edges
    return result


def main():
    edges = collections.defaultdict(list)  # (from, to) -> [file:line]
    for d, _, files in os.walk(ROOT):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(d, name)
            me = top_module(path)
            if me in ("lib", "main"):
                continue
            for n, to in imports(path):
                if to != me and to in FLOOR:
                    edges[(me, to)].append(f"src/{os.path.relpath(path, ROOT)}:{n}")
    problems = []
    unknown = sorted({top_module(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs
                      if f.endswith(".rs")} - set(FLOOR) - {"lib", "main"})
    for m in unknown:
        problems.append(f"src/{m}: not on any floor; add it to FLOORS in .ci/floors.py")
    for (a, b), where in sorted(edges.items()):
        if FLOOR.get(b, -1) > FLOOR.get(a, -1):
            problems.append(f"{a} (floor {LABELS[FLOOR[a]]}) imports {b} (floor {LABELS[FLOOR[b]]}), "
                            f"which is above it: {', '.join(where)}")
    # Circles within a floor.
    graph = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    for comp in circles(graph):
        problems.append("circle between " + ", ".join(sorted(comp)) + ": " + "; ".join(
            f"{a} -> {b} at {edges[(a, b)][0]}" for a in comp for b in comp if (a, b) in edges))
    # Circles between the submodules of one module (e.g. protocol/der.rs <-> protocol/oid.rs).
    for top, sub_edges in sorted(submodule_edges().items()):
        sub_graph = collections.defaultdict(set)
        for a, b in sub_edges:
            sub_graph[a].add(b)
        for comp in circles(sub_graph):
            problems.append(f"circle inside {top}/ between " + ", ".join(sorted(comp)) + ": " +
                            "; ".join(f"{a} -> {b} at {sub_edges[(a, b)][0]}"
                                      for a in comp for b in comp if (a, b) in sub_edges))
    if "--graph" in sys.argv:
        for a in sorted(graph, key=lambda m: FLOOR.get(m, 99)):
            print(f"{a:9} -> {', '.join(sorted(graph[a], key=lambda m: FLOOR.get(m, 99)))}")
    if problems:
        print("floors: imports must only point down (src/lib.rs):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"floors: {len(edges)} module imports, all pointing down, no circle (nor between "
          "the submodules of one module)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
