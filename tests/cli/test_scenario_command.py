"""``metacomm scenario list|show|new``: the built-ins' own files, annotated from the format's own schema; a starter
file that the real loader reads as the built-in it was started from."""

import tomllib

import pytest

from metacomm.cli.main import main
from metacomm.scenarios.drift_scenarios import list_scenarios, load_scenario

BUILTINS = list_scenarios()


def _builtin_text(name):
    from metacomm.scenarios.drift_builtins import builtin_scenario_text
    return builtin_scenario_text(name)


def test_list_names_every_builtin_with_its_description(capsys):
    assert main(["scenario", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == BUILTINS
    for ln, name in zip(out, BUILTINS, strict=True):
        assert tomllib.loads(_builtin_text(name)).get("description", "") in ln


@pytest.mark.parametrize("name", BUILTINS)
def test_show_is_the_builtin_file_with_annotations(name, capsys):
    assert main(["scenario", "show", name]) == 0
    shown = capsys.readouterr().out
    assert tomllib.loads(shown) == tomllib.loads(_builtin_text(name))  # the same TOML, only comments added
    assert main(["scenario", "show", name, "--raw"]) == 0
    assert capsys.readouterr().out == _builtin_text(name)  # byte for byte


def test_the_annotations_are_the_schema_comments_of_the_keys():
    from metacomm.cli.commands.scenario import show_text
    text = show_text("doppler-fast")
    # independent reference: the schema in the docstring of metacomm.scenarios.drift_scenarios says these
    assert "ebno_db = 10.0  # nominal Eb/N0 [dB] (required" in text
    assert "rho = 0.5  # gauss-markov: frame-to-frame correlation in [0, 1]" in text
    assert "[codec]  # the codec geometry the scenario is meant for (required)" in text
    assert "process = \"gauss-markov\"  # gauss-markov | jakes | iid" in text
    rs = show_text("regime-switch")
    assert 'drift = { process = "gauss-markov", rho = 0.95 }  # how the channel state evolves' in rs
    assert 'position = "tx"  # tx (before the fading channel) | rx (after it)' in rs


@pytest.mark.parametrize("template", BUILTINS)
def test_new_writes_a_file_the_loader_reads_as_its_template(template, tmp_path, capsys):
    path = tmp_path / "my-scenario.toml"
    assert main(["scenario", "new", str(tmp_path / "my-scenario"), "--from", template]) == 0
    assert str(path) in capsys.readouterr().out
    mine, ref = load_scenario(str(path)), load_scenario(template)
    assert mine.name == "my-scenario" and template in mine.description
    strip = lambda c: {k: v for k, v in c.items() if k not in ("name", "description")}  # noqa: E731
    assert strip(mine.config) == strip(ref.config)
    assert (mine.k, mine.n, mine.ebno_db, mine.seed) == (ref.k, ref.n, ref.ebno_db, ref.seed)
    text = path.read_text()
    assert "# [segment.impairment.params]" in text or "[segment.impairment.params]" in text  # the whole format
    from metacomm.scenarios.drift_builtins import builtin_match
    assert builtin_match(str(path)) is None  # a user's file: never taken for the built-in (no shipped tracker)


def test_new_refuses_to_overwrite_without_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text("keep me\n")
    assert main(["scenario", "new", "mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and "mine.toml" in err
    assert (tmp_path / "mine.toml").read_text() == "keep me\n"
    assert main(["scenario", "new", "mine.toml", "--overwrite"]) == 0
    assert load_scenario("mine.toml").name == "mine"


@pytest.mark.parametrize("argv,flag", [(["scenario", "show", "nope"], "BUILTIN"),
                                       (["scenario", "new", "x", "--from", "nope"], "--from"),
                                       (["scenario"], "ACTION")])
def test_bad_input_is_one_line_exit_2(argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {flag}:" in err, err
    assert not (tmp_path / "x.toml").exists()
