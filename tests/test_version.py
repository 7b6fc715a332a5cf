"""The package version comes from the distribution metadata, with the source tree's pyproject.toml as fallback."""

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import metacomm

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _pyproject_version() -> str:
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)["project"]["version"]


def test_version_is_the_installed_metadata():
    assert metacomm.__version__ == importlib.metadata.version("metacomm")
    assert metacomm.__version__ == _pyproject_version()


def test_fallback_to_pyproject_when_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metacomm._metadata, "version", not_installed)
    assert metacomm._read_version() == _pyproject_version()


def test_version_is_written_by_the_cli(capsys):
    from metacomm.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"metacomm {importlib.metadata.version('metacomm')}"
