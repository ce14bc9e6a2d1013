#!/usr/bin/env python3
"""Holds the tree to the layers ARCHITECTURE.md writes down (`make test` runs this).

- Every workspace package sits in exactly one layer of ARCHITECTURE.md's "Layers" table, in
  that layer's folder.
- A package depends only on packages of lower layers (`cargo metadata`), its tests included: a
  test that needs a package of its own layer or above belongs a layer up (tests/, at the top).
- Inside each package, the top-level modules use each other without a cycle (the `crate::` and
  `super::` paths of the non-test code).

Usage: scripts/check-layers.py [--self-test]
  --self-test  first show, on a made-up tree, that each rule catches what it should
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_layers(architecture: str):
    """[(number, name, folders, packages)] from the "## Layers" table."""
    section = architecture.split("\n## Layers", 1)
    if len(section) < 2:
        raise SystemExit("ARCHITECTURE.md has no '## Layers' section")
    layers = []
    for line in section[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        number, name, folders, packages = cells
        layers.append((int(number), name, re.findall(r"`([^`]+)`", folders), re.findall(r"`([^`]+)`", packages)))
    if not layers:
        raise SystemExit("ARCHITECTURE.md's Layers section has no table rows (| N | name | `folder/` | `package` |)")
    return layers


def check_packages(layers, packages, root: Path):
    """Problems with the packages' places and dependencies. `packages` is cargo metadata's list."""
    problems = []
    layer_of = {}
    for number, name, folders, members in layers:
        for member in members:
            if member in layer_of:
                problems.append(f"{member} is in two layers")
            layer_of[member] = (number, name, folders)
    local = {p["name"] for p in packages}
    for package in packages:
        name = package["name"]
        if name not in layer_of:
            problems.append(f"{name} is in no layer of ARCHITECTURE.md")
            continue
        number, layer, folders = layer_of[name]
        place = Path(package["manifest_path"]).parent.relative_to(root).as_posix() + "/"
        if not any(place.startswith(folder) for folder in folders):
            problems.append(f"{name} ({layer}) lives in {place}, not in {' or '.join(folders)}")
        for dep in package["dependencies"]:
            other = dep["name"]
            if other not in local or other == name or other not in layer_of:
                continue
            theirs, their_layer, _ = layer_of[other]
            if theirs >= number:
                kind = "dev-depends" if dep.get("kind") == "dev" else "depends"
                problems.append(f"{name} ({layer}, layer {number}) {kind} on {other} ({their_layer}, layer {theirs})")
    for name in layer_of:
        if name not in local:
            problems.append(f"ARCHITECTURE.md's layers name {name}, which is no workspace package")
    return problems


TEST_MODULE = re.compile(r"^#\[cfg\(test\)\]\s*\nmod \w+ \{.*", re.S | re.M)
LINE_COMMENT = re.compile(r"//.*")


def module_of(path: Path, src: Path):
    """The module path of a source file: src/a/b.rs and src/a/b/mod.rs are ["a", "b"]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def used_paths(text: str):
    """The paths a file names with `crate::` or `super::` (a use group counts each member)."""
    text = LINE_COMMENT.sub("", TEST_MODULE.sub("", text))
    paths = []
    for match in re.finditer(r"(?<![\w$])((?:crate|super)(?:::super)*)::(\{|\w+)", text):
        head, rest = match.group(1), match.group(2)
        if rest != "{":
            paths.append((head, rest))
            continue
        depth, start = 1, match.end()
        end = start
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        group, depth, item = text[start : end - 1], 0, ""
        for char in group + ",":
            if char == "," and depth == 0:
                first = re.match(r"\s*(\w+)", item)
                if first:
                    paths.append((head, first.group(1)))
                item = ""
                continue
            depth += {"{": 1, "}": -1}.get(char, 0)
            item += char
    return paths


def module_cycles(src: Path):
    """Cycles among a crate's top-level modules, each as a list of names."""
    edges = {}
    for path in sorted(src.rglob("*.rs")):
        module = module_of(path, src)
        if not module:
            continue
        for head, first in used_paths(path.read_text()):
            # `super` is the enclosing module: from src/a/b.rs (or src/a/b/mod.rs) it is `a`,
            # from src/a.rs the crate, whose item `first` is then the module used.
            base = [] if head == "crate" else module[: -head.count("super")]
            target = base[0] if base else first
            if target != module[0]:
                edges.setdefault(module[0], set()).add(target)
    modules = {m for m in edges} | {t for ts in edges.values() for t in ts}
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m)
    return cycles


def check(root: Path, packages):
    layers = read_layers((root / "ARCHITECTURE.md").read_text())
    problems = check_packages(layers, packages, root)
    for package in packages:
        for target in package["targets"]:
            if not {"lib", "bin"} & set(target["kind"]):
                continue
            src = Path(target["src_path"]).parent
            for cycle in module_cycles(src):
                problems.append(f"{package['name']}: modules use each other in a cycle: {' -> '.join(cycle)}")
    return sorted(set(problems)), layers


def self_test():
    """Each rule, shown to catch its violation on a made-up tree."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ARCHITECTURE.md").write_text(
            "# x\n## Layers\n| layer | name | folders | packages |\n|---|---|---|---|\n"
            "| 0 | base | `crates/` | `low`, `peer` |\n| 1 | top | `app/` | `high`, `missing` |\n## Next\n"
        )
        src = root / "crates/low/src"
        (src / "b").mkdir(parents=True)
        (src / "lib.rs").write_text("pub mod a;\npub mod b;\n")
        (src / "a.rs").write_text("use crate::{b::{x, y}, c};\n#[cfg(test)]\nmod tests {\n use crate::z;\n}\n")
        (src / "b/mod.rs").write_text("mod inner;\n")
        (src / "b/inner.rs").write_text("// crate::comment is not a use\npub fn f() { super::super::a::g() }\n")
        (src / "z.rs").write_text("use crate::a;\n")

        def package(name, folder, deps):
            path = root / folder / name
            return {
                "name": name,
                "manifest_path": str(path / "Cargo.toml"),
                "dependencies": deps,
                "targets": [{"kind": ["lib"], "src_path": str(path / "src/lib.rs")}],
            }

        packages = [
            package("low", "crates", [{"name": "high", "kind": None}]),
            package("high", "crates", [{"name": "low", "kind": None}]),
            package("stray", "app", []),
            package("peer", "crates", [{"name": "low", "kind": "dev"}]),
        ]
        problems, _ = check(root, packages)
        expected = [
            "low (base, layer 0) depends on high (top, layer 1)",
            "high (top) lives in crates/high/, not in app/",
            "stray is in no layer of ARCHITECTURE.md",
            "ARCHITECTURE.md's layers name missing, which is no workspace package",
            "low: modules use each other in a cycle: a -> b -> a",
            "peer (base, layer 0) dev-depends on low (base, layer 0)",
        ]
        missed = [e for e in expected if e not in problems]
        unexpected = [p for p in problems if p not in expected]
        if missed or unexpected:
            print("check-layers self-test failed", file=sys.stderr)
            for e in missed:
                print(f"  not caught: {e}", file=sys.stderr)
            for p in unexpected:
                print(f"  wrongly reported: {p}", file=sys.stderr)
            sys.exit(1)
        print(f"check-layers self-test: each of the {len(expected)} planted violations caught, nothing else")


def main():
    if "--help" in sys.argv or "-h" in sys.argv:
        print(__doc__.strip())
        return
    if "--self-test" in sys.argv:
        self_test()
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    problems, layers = check(ROOT, metadata["packages"])
    if problems:
        print("the layers of ARCHITECTURE.md are not what the code does:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(1)
    names = ", ".join(f"{number} {name}" for number, name, _, _ in layers)
    print(f"layers hold: {len(metadata['packages'])} packages in {len(layers)} layers ({names}); no module cycle")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
