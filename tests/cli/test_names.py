"""The names the parsers show without importing torch are the registries' own: every static read the parsers make
(a data folder, a literal table, a config dataclass) equals what the real module computes."""

import dataclasses
import importlib

import pytest

from metacomm.cli import _names
from metacomm.cli.main import build_parser


def _build_all(parser):
    """Declare every parser (commands are declared lazily, when looked up)."""
    for a in parser._actions:
        if a.__class__.__name__ == "_SubParsersAction":
            for _, sp in a.choices.items():
                _build_all(sp)


@pytest.fixture(scope="module")
def reads():
    _build_all(build_parser())  # (a module may read at import: READS holds every read since)
    assert _names.READS, "the parsers read no names"
    return list(_names.READS)


def _real_data(folder):
    if folder == "scenarios/data":
        from metacomm.scenarios.drift_scenarios import list_scenarios
        return sorted(list_scenarios())
    if folder == "codecs/ofdm_links":
        from metacomm.codecs.ofdm_config import preset_names
        return sorted(preset_names())
    if folder == "checkpoints":
        return None
    raise AssertionError(f"a parser reads the folder {folder}: add its registry here")


def test_every_data_folder_equals_its_registry(reads):
    folders = {r[1] for r in reads if r[0] == "data"}
    assert {"scenarios/data", "codecs/ofdm_links", "checkpoints"} <= folders
    for folder in folders:
        real = _real_data(folder)
        if real is not None:
            assert _names.data_names(folder, ".toml") == real, folder


def test_the_shipped_trackers_are_the_ones_the_drift_run_picks():
    from metacomm.experiments.drift import shipped_tracker
    found = _names.shipped_trackers()
    assert found, "no shipped tracker found"
    for scenario, pilots in found.items():
        for p in pilots:
            assert shipped_tracker(scenario, p), (scenario, p)


def _same(static, real):
    if isinstance(static, dict):
        assert list(static) == list(real)
        for k, v in static.items():
            if not isinstance(v, _names._Opaque):
                _same(v, real[k])
        return
    assert static == real


def test_every_literal_table_equals_the_module_value(reads):
    tables = [(m, n) for kind, m, n in reads if kind == "constant"]
    assert ("metacomm.experiments.ber", "CHANNELS") in tables
    assert ("metacomm.experiments.packs", "PACKS") in tables
    for module, name in tables:
        real = getattr(importlib.import_module(module), name)
        try:
            static = _names.constant(module, name)
        except _names.StaticReadError as e:  # the help then names the table instead of listing it
            pytest.fail(f"{module}.{name} is no longer a literal table the CLI can read ({e}); keep it literal "
                        "or list its names in a torch-free module")
        _same(static, real)


def test_every_config_dataclass_read_equals_its_fields(reads):
    classes = [(m, c) for kind, m, c in reads if kind == "fields"]
    assert classes
    for module, cls in classes:
        real = dataclasses.fields(getattr(importlib.import_module(module), cls))
        static = _names.dataclass_fields(module, cls)
        assert [f.name for f in static] == [f.name for f in real], (module, cls)
        for s, r in zip(static, real, strict=True):
            if s.has_default and not isinstance(s.default, _names._Opaque):
                assert s.default == r.default, (module, cls, s.name)


def test_the_pack_subcommands_are_the_declared_packs():
    from metacomm.experiments.packs import PACKS
    parser = build_parser()
    assert set(parser.commands["pack"].packs) == set(PACKS)


def test_a_static_read_follows_imports_and_refuses_code(tmp_path, monkeypatch):
    """The reader on a toy package: literals, names, +, tuple(dict), str.join and an import; a call is refused."""
    pkg = tmp_path / "metacomm"
    (pkg / "toy").mkdir(parents=True)
    (pkg / "toy" / "__init__.py").write_text("")
    (pkg / "toy" / "a.py").write_text('B = ("x", "y")\nD = {"p": 1, "q": make()}\n')
    (pkg / "toy" / "b.py").write_text(
        "from metacomm.toy.a import B\nC = B + ('z',)\nK = tuple(dict(a=1))\nT = tuple({'u': 1, 'v': 2})\n"
        "J = ','.join(B)\nN = -3\n"
        "import dataclasses\n@dataclasses.dataclass\nclass Cfg:\n    a: int = 1\n    b: str = J\n"
        "    c: object = dataclasses.field(default_factory=list)\n    d: 'ClassVar[int]' = 4\n    e: float\n")
    monkeypatch.setattr(_names, "PACKAGE_DIR", pkg)
    _names._tree.cache_clear()
    try:
        assert _names.constant("metacomm.toy.b", "C") == ("x", "y", "z")
        assert _names.constant("metacomm.toy.b", "T") == ("u", "v")
        assert _names.constant("metacomm.toy.b", "J") == "x,y" and _names.constant("metacomm.toy.b", "N") == -3
        assert _names.names("metacomm.toy.a", "D") == ["p", "q"]
        with pytest.raises(_names.StaticReadError):
            _names.constant("metacomm.toy.b", "K")  # dict(a=1): a call with keywords is code
        assert _names.names("metacomm.toy.b", "K") is None
        assert _names.listing("metacomm.toy.b", "K") == "the names of metacomm.toy.b.K"
        fields = _names.dataclass_fields("metacomm.toy.b", "Cfg")
        assert [(f.name, f.has_default) for f in fields] == [("a", True), ("b", True), ("c", True), ("e", False)]
        assert fields[1].default == "x,y" and isinstance(fields[2].default, _names._Opaque)
    finally:
        _names._tree.cache_clear()


def test_list_values_print_the_registry_and_exit_0(capsys):
    from metacomm.drift.registry import scheme_names
    from metacomm.scenarios import scenario_names
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["drift", "--schemes", "list"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for n in scheme_names():
        assert f"  {n} [" in out, n
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["meta-train", "--scenario", "list"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(f"  {n}:" in out for n in scenario_names())
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["ber", "--receiver", "list"])
    from metacomm.codecs.ofdm_receivers import RECEIVERS
    assert e.value.code == 0 and capsys.readouterr().out.split() == list(RECEIVERS)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["fewshot", "--schemes", "list"])
    from metacomm.experiments.fewshot import all_schemes
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(f"  {s}" in out for s in all_schemes())


@pytest.mark.parametrize("argv,flag", [
    (["drift", "--scenario", "doppler-fast", "--schemes", "no-such-scheme", "--frames", "1"], "--schemes"),
    (["meta-train", "--scenario", "no-such-scenario"], "--scenario"),
    (["ber", "--link", "sionna-nrx-tutorial", "--receiver", "no-such-rx", "--ebno-db", "0"], "--receiver"),
])
def test_a_name_checked_at_run_time_is_one_line_naming_the_flag(argv, flag, tmp_path, capsys):
    from metacomm.cli.main import main
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {flag}:" in err, err
    assert not (tmp_path / "o").exists()
