#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks that plexus's top-level folders depend one way: down.

The layers, bottom up (docs/ARCHITECTURE.md):
  brokers/    the protocol's floor (brokers/protocol: wire, topics, metrics),
              then the broker core, cluster and server
  framework/  the client connector, the runtime (which embeds a broker), the CLI
  actors/     triggers: functions fed from outside (HTTP, files, timers, ...)
  samples/    programs users read
bench/ and test/ sit on top of everything and are not checked.

Two rules, each a failure with the file and line:
  1. a quoted #include in a layer resolves to a file in the same layer or
     one below it (relative to the including file first, then by path suffix
     across the tree);
  2. a CMakeLists.txt in a layer links no library target defined in a
     layer above it.

usage: check-layers.py [SOURCE_DIR]   (default: this script's repository)
"""
import os
import re
import sys

LAYERS = ["brokers", "framework", "actors", "samples"]
SOURCES = (".cpp", ".hpp", ".h", ".cc")


def layer_of(rel):
    top = rel.split(os.sep, 1)[0]
    return LAYERS.index(top) if top in LAYERS else None


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    files = []
    for top in LAYERS:
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                files.append(os.path.relpath(os.path.join(d, n), root))
    problems = []

    # 1. includes
    include_re = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    for rel in files:
        if not rel.endswith(SOURCES):
            continue
        mine = layer_of(rel)
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = include_re.match(line)
                if not m:
                    continue
                inc = m.group(1)
                beside = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                if beside in files:
                    candidates = [beside]
                else:
                    candidates = [p for p in files if p == inc or p.endswith(os.sep + inc)]
                if not candidates:
                    continue  # a system or generated header
                lowest = min(layer_of(p) for p in candidates)
                if lowest > mine:
                    problems.append(f"{rel}:{lineno}: includes \"{inc}\" from {LAYERS[lowest]}/, "
                                    f"a layer above {LAYERS[mine]}/")

    # 2. link targets
    defined = {}
    target_re = re.compile(r'add_library\(\s*([A-Za-z0-9_]+)')
    alias_re = re.compile(r'add_library\(\s*([A-Za-z0-9_:]+)\s+ALIAS\s+([A-Za-z0-9_]+)')
    cmakes = [p for p in files if os.path.basename(p) == "CMakeLists.txt"]
    texts = {p: open(os.path.join(root, p), encoding="utf-8").read() for p in cmakes}
    for p, text in texts.items():
        for m in target_re.finditer(text):
            defined.setdefault(m.group(1), layer_of(p))
        for m in alias_re.finditer(text):
            defined[m.group(1)] = layer_of(p)
    link_re = re.compile(r'target_link_libraries\(([^)]*)\)', re.S)
    for p, text in texts.items():
        mine = layer_of(p)
        for m in link_re.finditer(text):
            lineno = text.count("\n", 0, m.start()) + 1
            for word in m.group(1).split()[1:]:
                if word in defined and defined[word] > mine:
                    problems.append(f"{p}:{lineno}: links {word}, defined in "
                                    f"{LAYERS[defined[word]]}/, a layer above {LAYERS[mine]}/")

    for line in problems:
        print(line)
    if problems:
        print(f"check-layers: {len(problems)} arrow(s) point up", file=sys.stderr)
        return 1
    print(f"check-layers: {len(files)} files in {', '.join(LAYERS)}: every arrow points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
