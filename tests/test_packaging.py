"""The package is ready for PyPI: its metadata (SPDX licence, classifiers, typed), and what the sdist and the wheel
carry -- the sdist everything its tests need (``tests/`` whole with the golden files, examples, docs), the wheel
the package with its data files and ``py.typed`` -- built here without network (``--no-isolation``), with no
setuptools deprecation warning."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def test_license_is_spdx_apache_with_its_full_text():
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10000, "the full licence text"
    # an SPDX expression and a licence classifier together are refused by setuptools >= 77
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    requires = PYPROJECT["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires)


def test_metadata_for_pypi():
    assert PROJECT["readme"] == "README.md" and PROJECT["requires-python"] == ">=3.11"
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert "torch>=2.9" in PROJECT["dependencies"], "any torch >= 2.9 (the user's CPU or CUDA build is kept)"
    assert "tensorflow" not in " ".join(PROJECT["dependencies"]).lower()
    assert {"test", "docs"} <= set(PROJECT["optional-dependencies"])
    assert (ROOT / "metacomm" / "py.typed").exists()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["metacomm"]


def test_mypy_checks_the_public_packages():
    files = PYPROJECT["tool"]["mypy"]["files"]
    for package in ("channels", "codecs", "adaptation", "scenarios", "sims", "drift", "experiments"):
        assert f"metacomm/{package}" in files


def _tracked_like(base: Path) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("build")
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("needs setuptools >= 77 installed (the build backend, run without isolation)")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout + proc.stderr


def test_build_has_no_setuptools_deprecation_warning(built):
    _, log = built
    lines = [line for line in log.splitlines()  # the file lists name files, not warnings
             if not line.startswith(("copying ", "adding ", "creating ", "hard linking ", "removing "))]
    warned = [line for line in lines if "deprecat" in line.lower()]
    assert not warned, "\n".join(warned)


def test_sdist_carries_the_tests_examples_and_docs(built):
    out, _ = built
    (sdist,) = out.glob("metacomm-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for required in ("LICENSE", "README.md", "pyproject.toml", "mkdocs.yml", "MANIFEST.in", "metacomm/py.typed",
                     "tests/golden/values.json", "tests/golden/record.py", "tests/conftest.py",
                     "docs/img/demo-drift.png", "docs/tutorials/getting_started.py", ".ci/run"):
        assert required in names, required
    for folder in ("tests", "examples", "docs", "benchmarks"):
        missing = sorted(_tracked_like(ROOT / folder) - names)
        assert not missing, f"the sdist lacks {missing[:10]}"
    readme_links = re.findall(r"\]\(([^)\s:]+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert readme_links and not [t for t in readme_links if t.split("#")[0] not in names], \
        "the README's relative links point to files the sdist ships"


def test_wheel_carries_the_package_and_its_data_only(built):
    out, _ = built
    (wheel,) = out.glob("metacomm-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "metacomm/py.typed" in names
    assert any(n.startswith("metacomm/checkpoints/") and n.endswith(".pt") for n in names)
    assert "metacomm/scenarios/data/doppler-fast.toml" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "examples/"))]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: torch>=2.9" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
