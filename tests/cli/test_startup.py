"""The command line answers at once: no help page, no --version and no usage error imports torch, Sionna,
matplotlib or the experiments/channels/codecs layers (checked in a fresh interpreter), and every help page is
plain text (no reST markup) that lists what its flags take."""

import json
import os
import re
import subprocess
import sys

import pytest

from metacomm.cli.main import build_parser

HEAVY = ("torch", "sionna", "matplotlib", "metacomm.experiments", "metacomm.channels", "metacomm.codecs")


def _pages(parser=None, prefix=()):
    """(argv prefix, parser) of every parser: the top, each command, each nested subcommand."""
    parser = parser or build_parser()
    out = [(prefix, parser)]
    for a in parser._actions:
        if a.__class__.__name__ == "_SubParsersAction":
            for name, sp in a.choices.items():
                out += _pages(sp, (*prefix, name))
    return out


PAGES = [argv for argv, _ in _pages()]
USAGE_ERRORS = [
    ["drift", "--bogus"],                                           # an unknown flag
    ["drift", "--scenario", "doppler-fast"],                        # a missing required flag
    ["bogus-command"],                                              # a bad choice of command
    ["pack", "nope"],                                               # a bad choice of pack
    ["drift", "--scenario", "doppler-fast", "--out", "x", "--frames", "many"],  # a flag's type
    ["scenario", "show"],                                           # a missing positional
    ["drift", "--scenario", "my_scenario.toml", "--out", "x"],      # a scenario file that is not there
    ["drift", "--scenario", "doppler-fst", "--out", "x"],           # a mistyped built-in
    ["demo", "--scenario", "doppler-fst"],
    ["drift", "--scenario", "doppler-fast", "--out", "x", "--threads", "0"],
]

_PROBE = r"""
import contextlib, io, json, sys
from metacomm.cli.main import main
HEAVY = %r
report = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    report.append({"argv": argv, "rc": rc, "out": out.getvalue(), "err": err.getvalue(),
                   "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(report))
"""


def _probe(argvs):
    """Run ``main(argv)`` for each argv in order in one fresh interpreter; the modules loaded after each."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _PROBE % (HEAVY,), json.dumps(argvs)], capture_output=True,
                       text=True, env=env, timeout=300, check=True)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def report():
    argvs = [["--help"], ["--version"]] + [[*p, "--help"] for p in PAGES if p] + USAGE_ERRORS
    return _probe(argvs)


def test_there_are_pages_for_every_command_and_nested_subcommand():
    from metacomm.cli.main import SUBCOMMANDS
    names = {p[0] for p in PAGES if p}
    assert names == set(SUBCOMMANDS)
    assert {p[1] for p in PAGES if len(p) == 2 and p[0] == "pack"} == {"compression", "label-noise", "adversarial"}
    assert {p[1] for p in PAGES if len(p) == 2 and p[0] == "scenario"} == {"list", "show", "new"}


def test_help_version_and_usage_errors_import_nothing_heavy(report):
    for r in report:
        assert r["heavy"] == [], (r["argv"], r["heavy"])


def test_help_and_version_exit_0_and_usage_errors_are_one_line_exit_2(report):
    for r in report:
        if r["argv"][-1] in ("--help", "--version"):
            assert r["rc"] == 0 and r["out"].strip(), r["argv"]
        else:
            assert r["rc"] == 2, r["argv"]
            assert r["err"].count("\n") == 1 and "error" in r["err"], (r["argv"], r["err"])


def test_version_names_the_package_version(report):
    import metacomm
    r = next(r for r in report if r["argv"] == ["--version"])
    assert r["out"].strip() == f"metacomm {metacomm.__version__}"


_MARKUP = re.compile(r"``|:(mod|func|class|data|meth|attr|obj):|`")


def test_every_help_page_is_plain_text(report):
    pages = [r for r in report if r["argv"][-1] == "--help"]
    assert len(pages) == len(PAGES)
    for r in pages:
        found = _MARKUP.search(r["out"])
        assert found is None, (r["argv"], r["out"][max(0, found.start() - 60):found.end() + 60])


def test_drift_help_lists_every_builtin_scenario(report):
    from metacomm.scenarios.drift_scenarios import BUILTIN_SCENARIOS, list_scenarios
    text = re.sub(r"\s+", "", next(r["out"] for r in report if r["argv"] == ["drift", "--help"]))
    for name in {*list_scenarios(), *BUILTIN_SCENARIOS}:
        assert name in text, name  # (argparse may break a name at a dash: whitespace removed)
    assert "phase-noise-drift" in text


def test_every_range_flag_says_the_stop_is_included(report):
    def flag_help(argv, flag):
        page = next(r["out"] for r in report if r["argv"] == [*argv, "--help"])
        block = page[page.index(f"  {flag} "):]
        nxt = re.search(r"\n  -", block[3:])
        return re.sub(r"\s+", " ", block[:nxt.start() + 3] if nxt else block)
    for argv, flag in ((["ber"], "--ebno-db"), (["drift"], "--seeds"), (["fewshot"], "--pilots"),
                       (["pack", "adversarial"], "--psr-db"), (["pack", "adversarial"], "--ebno-db")):
        text = flag_help(argv, flag)
        assert "STOP:STEP" in text and "includes STOP" in text or "STOP included" in text, (argv, flag, text)


def test_the_python_m_entry_point_answers_without_heavy_imports():
    """``python -m metacomm --help`` in a fresh interpreter (the console script runs the same main)."""
    code = ("import runpy, sys; sys.argv = ['metacomm', '--help']\n"
            "try:\n    runpy.run_module('metacomm', run_name='__main__')\nexcept SystemExit as e:\n"
            f"    assert e.code == 0\nprint([m for m in {HEAVY!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_commands_are_declared_only_when_looked_up(monkeypatch):
    """``metacomm --help`` lists every command from its one-line help without declaring any command's flags;
    parsing one command declares that one only."""
    import metacomm.cli.commands.ber as ber_cmd
    import metacomm.cli.commands.drift as drift_cmd
    calls = []
    for mod in (ber_cmd, drift_cmd):
        real = mod.add_parser
        monkeypatch.setattr(mod, "add_parser", lambda sub, name, real=real: calls.append(name) or real(sub, name))
    parser = build_parser()
    text = parser.format_help()
    assert calls == [] and ber_cmd.COMMAND_HELP in re.sub(r"\s+", " ", text)
    parser.parse_args(["drift", "--scenario", "doppler-fast", "--out", "o"])
    assert calls == ["drift"]
    assert parser.commands["ber"] is parser.commands["ber"] and calls == ["drift", "ber"]  # built once
    assert "--threads" in parser.commands["ber"]._option_string_actions


@pytest.mark.parametrize("spec", ["doppler-fst", "nope.toml", "sub/nope", "sub/nope.toml", "doppler-fast.toml"])
def test_the_early_scenario_check_says_what_the_loader_says(spec, tmp_path, monkeypatch):
    from metacomm import ConfigError
    from metacomm.cli.commands.drift import check_scenario_exists
    from metacomm.scenarios.drift_scenarios import load_scenario
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as early:
        check_scenario_exists(spec)
    with pytest.raises(ConfigError) as real:
        load_scenario(spec)
    assert (early.value.field, str(early.value)) == (real.value.field, str(real.value))


def test_the_early_scenario_check_passes_what_the_loader_loads(tmp_path, monkeypatch):
    from metacomm.cli.commands.drift import check_scenario_exists
    from metacomm.scenarios.drift_scenarios import list_scenarios, load_scenario
    monkeypatch.chdir(tmp_path)
    for name in list_scenarios():
        check_scenario_exists(name)
    f = tmp_path / "mine.toml"
    from metacomm.cli.commands.scenario import starter
    f.write_text(starter("mine", "doppler-fast"))
    check_scenario_exists(str(f))
    check_scenario_exists("mine.toml")
    assert load_scenario("mine.toml").name == "mine"
