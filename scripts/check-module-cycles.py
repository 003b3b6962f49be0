#!/usr/bin/env python3
"""Print the module import graph of each crate and exit 1 if it has a cycle.

For every crate under crates/, a top-level module X (src/X.rs and src/X/**) depends on Y when
its code names `crate::Y` (in a `use` or in a path, including `use crate::{Y, ...}`).
The data path is checked one level deeper: inside swarmwall-server/src/server/, a file
depends on a sibling when it names `super::Y` or `crate::server::Y` (the parent mod.rs, which
declares the siblings, is left out of that graph).

Test code is left out: files named tests.rs or under a tests/ folder, and everything after a
`#[cfg(test)]` line in a file (unit-test modules sit at the end of their files).

Usage: scripts/check-module-cycles.py [--quiet]
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRATES = os.path.join(ROOT, "crates")
NESTED = [("swarmwall-server", "server")]

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def production_source(path):
    """The file's text without its trailing `#[cfg(test)]` part and without comments."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.MULTILINE)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def names_after(text, prefix):
    """First path segments that follow `prefix::`, including grouped `prefix::{a, b::c}`."""
    found = set()
    pattern = re.compile(re.escape(prefix) + r"::\s*(\{|[A-Za-z_][A-Za-z0-9_]*)")
    for match in pattern.finditer(text):
        if match.group(1) != "{":
            found.add(match.group(1))
            continue
        depth, start, i = 1, match.end(), match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        group = text[start : i - 1]
        # Top-level items of the group: split on commas at brace depth 0.
        depth, item = 0, ""
        for char in group + ",":
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            if char == "," and depth == 0:
                head = WORD.match(item.strip())
                if head:
                    found.add(head.group(0))
                item = ""
            else:
                item += char
    return found


def is_test_file(path):
    parts = path.split(os.sep)
    return parts[-1] == "tests.rs" or "tests" in parts[:-1]


def module_files(src, module):
    """All production .rs files of module `module` directly under `src`."""
    files = []
    single = os.path.join(src, module + ".rs")
    if os.path.isfile(single):
        files.append(single)
    folder = os.path.join(src, module)
    if os.path.isdir(folder):
        for dirpath, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(dirpath, name)
                if name.endswith(".rs") and not is_test_file(os.path.relpath(path, src)):
                    files.append(path)
    return files


def modules_in(src, skip=("lib", "main", "mod")):
    found = set()
    for entry in os.listdir(src):
        name = entry[:-3] if entry.endswith(".rs") else entry
        if os.path.isdir(os.path.join(src, entry)) or entry.endswith(".rs"):
            if name not in skip and name != "tests" and WORD.fullmatch(name):
                found.add(name)
    return sorted(found)


def graph_for(src, prefixes):
    modules = modules_in(src)
    graph = {}
    for module in modules:
        edges = set()
        for path in module_files(src, module):
            text = production_source(path)
            for prefix in prefixes:
                edges |= names_after(text, prefix)
        graph[module] = sorted(e for e in edges if e in modules and e != module)
    return graph


def cycles_in(graph):
    """The strongly connected components with more than one module (each is a cycle)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def main():
    quiet = "--quiet" in sys.argv[1:]
    graphs = []
    for crate in sorted(os.listdir(CRATES)):
        src = os.path.join(CRATES, crate, "src")
        if os.path.isdir(src):
            graphs.append((crate, graph_for(src, ["crate"])))
    for crate, module in NESTED:
        src = os.path.join(CRATES, crate, "src", module)
        graphs.append((f"{crate}::{module}", graph_for(src, ["super", f"crate::{module}"])))

    failed = False
    for name, graph in graphs:
        cycles = cycles_in(graph)
        if not quiet or cycles:
            print(f"{name}:")
            for module, edges in graph.items():
                print(f"  {module} -> {', '.join(edges) if edges else '(nothing)'}")
        for cycle in cycles:
            print(f"  CYCLE among: {', '.join(cycle)}")
            failed = True
    if failed:
        print("module cycles found", file=sys.stderr)
        return 1
    print("no module cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
