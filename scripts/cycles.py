#!/usr/bin/env python3
"""cycles.py [BUILD] -- call cycles between gateway .c files.

Reads the object files of portico_core in BUILD (default build) with nm: a
file that defines a symbol another file uses is called by it. Prints every
pair of files that call each other, with the symbols each way, then every
longer cycle (a group of files that reach each other), and exits 1 when
there is any. Calls should point down the layers (net -> http -> core
-> handlers -> upstream); a pair printed here is a place where they do not.
"""
import collections
import glob
import subprocess
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
objs = glob.glob(f"{build}/gateway/CMakeFiles/portico_core.dir/**/*.o", recursive=True)
if not objs:
    sys.exit(f"cycles: no objects under {build}/gateway (build first)")
defs, uses = {}, {}
for o in objs:
    name = o.split("portico_core.dir/")[-1][: -len(".o")]
    d, u = set(), set()
    for line in subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBR":
            d.add(f[2])
        elif len(f) == 2 and f[0] == "U":
            u.add(f[1])
    defs[name], uses[name] = d, u
owner = {s: n for n, d in defs.items() for s in d}
calls = collections.defaultdict(lambda: collections.defaultdict(list))
for n, u in uses.items():
    for s in sorted(u):
        o = owner.get(s)
        if o is not None and o != n:
            calls[n][o].append(s)
found = 0
for a in sorted(calls):
    for b in sorted(calls[a]):
        if a < b and a in calls.get(b, {}):
            found += 1
            print(f"{a} <-> {b}\n    {a} -> {', '.join(calls[a][b])}\n    {b} -> {', '.join(calls[b][a])}")

# Longer cycles: strongly connected groups (Tarjan) of more than two files.
index, low, stack, on, groups = {}, {}, [], set(), []


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in calls.get(v, {}):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        g = []
        while True:
            w = stack.pop()
            on.discard(w)
            g.append(w)
            if w == v:
                break
        groups.append(sorted(g))


sys.setrecursionlimit(10000)
for v in sorted(defs):
    if v not in index:
        visit(v)
big = [g for g in groups if len(g) > 2]
for g in big:
    print("cycle through " + ", ".join(g))
print(f"{found} two-way pair(s), {len(big)} longer cycle(s) among {len(objs)} files")
sys.exit(1 if found or big else 0)
