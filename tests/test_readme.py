"""The README and the docs pages say what is true: their Python snippets run as written (in a scratch directory,
one thread), their relative links resolve, and the README's two set-up commands are the ones CI runs.

A fence opened with ```` ```python ```` is executed; a sketch that is not meant to run is fenced ```` ```py ````.
The tutorials (``docs/tutorials/*.py``) are executed by ``tests/test_tutorials.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README] + sorted(p for p in (ROOT / "docs").rglob("*.md") if "_ext" not in p.parts)
BLOCKS = [(page, i, code) for page in PAGES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_and_docs_have_python_snippets():
    assert sum(page == README for page, _, _ in BLOCKS) >= 1
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("page,index,code", BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{i + 1}" for p, i, _ in BLOCKS])
def test_snippet_runs(page, index, code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    exec(compile(code, f"{page.relative_to(ROOT)} python block {index + 1}", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    """Every relative link or image of a page names a file that exists (anchors and URLs are not checked)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    missing = []
    for m in LINK.finditer(text):
        target = (m.group(1) or m.group(2)).split("#", 1)[0]
        if not target or re.match(r"[a-z]+:", target):
            continue
        generated = (page.parent / target).resolve().parent == ROOT / "docs" / "api"  # docs/_ext/api_pages.py
        if not (page.parent / target).exists() and not generated:
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: links to missing files {missing}"


def test_readme_links_stay_inside_the_sdist():
    """The README is the PyPI page: its relative links may only point to files the sdist ships (MANIFEST.in)."""
    text = README.read_text(encoding="utf-8")
    targets = [(m.group(1) or m.group(2)) for m in LINK.finditer(text)]
    relative = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert relative, "the README links its docs pages"
    for t in relative:
        assert t.split("/")[0] in ("docs", "LICENSE", "examples", "benchmarks", "tests"), t


def _setup_commands():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_two_setup_commands():
    demo, tests = _setup_commands()
    assert demo.endswith("metacomm demo") and "pip install -e ." in demo
    assert tests.endswith("python -m pytest") and "pip install -e '.[test]'" in tests
    for cmd in (demo, tests):  # torch first, from PyTorch's CPU wheel index (no multi-GB CUDA download)
        assert cmd.startswith("pip install torch --index-url https://download.pytorch.org/whl/cpu && ")


def test_ci_runs_the_readme_test_command():
    """`.ci/run` runs the second half of the README's test command (its first half, torch, is pinned there)."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    _, tests = _setup_commands()
    install = tests.split(" && ")[1]
    assert install == "pip install -e '.[test]'"
    assert "python -m pip install -q -e '.[test]'" in ci
    assert re.search(r"^python -m pytest\b", ci, re.M), "CI runs the test command"
    assert "pip install -q torch==2.13.0" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK) or ci.startswith("#!")
