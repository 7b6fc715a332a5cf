"""The layers of metacomm, read from the code's imports with `ast` (module-level and function-level imports alike):
no import circle between modules, no import running up the layers, and docs/ARCHITECTURE.md's layer picture is
the one the imports draw.

`python tests/test_layers.py --write` regenerates the picture in docs/ARCHITECTURE.md (between the
``<!-- layers:begin -->`` / ``<!-- layers:end -->`` markers); the test fails while the file is stale."""

from __future__ import annotations

import ast
import collections
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "metacomm")
DOC = os.path.join(ROOT, "docs", "ARCHITECTURE.md")

#: bottom-up: a module may import from its own layer and the layers below it, never from one above
LAYERS = [
    ("base", ("metacomm", "metacomm._validation", "metacomm._io", "metacomm._log", "metacomm._lazy", "metacomm._sionna",
              "metacomm.artefacts", "metacomm.checkpoints")),
    ("channels", ("metacomm.channels",)),
    ("codecs", ("metacomm.codecs",)),
    ("adaptation", ("metacomm.adaptation",)),
    ("scenarios", ("metacomm.scenarios",)),
    ("sims", ("metacomm.sims",)),
    ("drift", ("metacomm.drift",)),
    ("experiments", ("metacomm.experiments",)),
    ("cli", ("metacomm.cli", "metacomm.__main__")),
]
#: what each layer is for (the picture's labels)
ROLES = {"base": "ConfigError + checks, artefact files, Sionna glue", "channels": "differentiable channels, drift processes",
         "codecs": "learned and classical codecs, detection", "adaptation": "meta-learning engine, trackers",
         "scenarios": "few-shot scenarios and drift timelines", "sims": "BER engine, results, theory, stats, plots",
         "drift": "drift runs: protocol, scheme registry, schemes, links", "experiments": "one library call per command",
         "cli": "the metacomm command: flags -> config -> one call"}
#: the deprecated aliases kept for one release, each the one import up the layers it is allowed (file -> target)
DEPRECATED_ALIASES = {"metacomm.sims.cli": "metacomm.cli.main"}


def _modules() -> dict[str, str]:
    mods = {}
    for dp, _, fs in os.walk(PKG):
        for f in fs:
            if f.endswith(".py"):
                p = os.path.join(dp, f)
                rel = os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".")
                mods[rel[:-9] if rel.endswith(".__init__") else rel] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the metacomm modules it imports (every ``import`` / ``from ... import`` anywhere in the file)."""
    mods = _modules()
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for m, p in mods.items():
        with open(p, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if p.endswith("__init__.py") else m.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] != "metacomm":
                    continue
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "metacomm"]
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != m:
                    edges[m].add(t)
    for m in mods:
        edges.setdefault(m, set())
    return dict(edges)


def layer_of(module: str) -> int:
    best, length = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (module == pre or module.startswith(pre + ".")) and len(pre) > length and not (
                    pre == "metacomm" and module != "metacomm"):
                best, length = i, len(pre)
    if best is None:
        raise AssertionError(f"{module} is in no layer of LAYERS: add it")
    return best


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def picture(edges: dict[str, set[str]]) -> str:
    """The layer diagram: each layer (top first) with the lower layers it imports, counted in module edges."""
    counts: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for a, targets in edges.items():
        if a in DEPRECATED_ALIASES:
            continue
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            if la != lb:
                counts[la][lb] += 1
    lines = ["```", "(generated from the imports by tests/test_layers.py; arrows point down: 'imports from')", ""]
    width = max(len(n) for n, _ in LAYERS)
    for i in range(len(LAYERS) - 1, -1, -1):
        name = LAYERS[i][0]
        deps = ", ".join(f"{LAYERS[j][0]} ({counts[i][j]})" for j in sorted(counts[i], reverse=True))
        lines.append(f"{name:>{width}}  {ROLES[name]}")
        if deps:
            lines.append(f"{'':>{width}}    -> {deps}")
    lines.append("```")
    return "\n".join(lines)


def _doc_block() -> str | None:
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    if "<!-- layers:begin -->" not in text:
        return None
    return text.split("<!-- layers:begin -->", 1)[1].split("<!-- layers:end -->", 1)[0].strip()


def test_no_import_circle_anywhere():
    found = cycles(import_graph())
    assert not found, f"import circles: {found}"


def test_no_import_runs_up_the_layers():
    up = []
    for a, targets in import_graph().items():
        for b in targets:
            if layer_of(b) > layer_of(a) and DEPRECATED_ALIASES.get(a) != b:
                up.append(f"{a} -> {b} ({LAYERS[layer_of(a)][0]} imports {LAYERS[layer_of(b)][0]})")
    assert not up, "imports running up the layers:\n" + "\n".join(sorted(up))


def test_deprecated_aliases_only_re_export():
    """An alias module holds its one import up the layers, the warning, and nothing else (no code of its own)."""
    mods = _modules()
    for alias in DEPRECATED_ALIASES:
        with open(mods[alias], encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            assert isinstance(node, ast.Import | ast.ImportFrom | ast.Expr), (alias, ast.dump(node)[:80])


def test_the_architecture_picture_is_current():
    block = _doc_block()
    assert block is not None, "docs/ARCHITECTURE.md has no <!-- layers:begin --> block"
    assert block == picture(import_graph()), "stale layer picture: run python tests/test_layers.py --write"
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    for name, _ in LAYERS:  # the doc names every layer
        assert f"`{name}`" in text or f"`metacomm/{name}/`" in text, name


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        head, rest = text.split("<!-- layers:begin -->", 1)
        tail = rest.split("<!-- layers:end -->", 1)[1]
        new = f"{head}<!-- layers:begin -->\n{picture(import_graph())}\n<!-- layers:end -->{tail}"  # before opening
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(new)
    else:
        print(picture(import_graph()))
