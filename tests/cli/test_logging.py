"""``-q/--quiet`` and ``-v/--verbose`` (before or after the command) set the ``metacomm`` logger's level for the
command; INFO records go to stdout, warnings to stderr; the logger is restored afterwards."""

import logging

import pytest

import metacomm.cli.commands.scenario as scenario_cmd
from metacomm.cli.main import build_parser, log_level, main

DRIFT = ["drift", "--scenario", "doppler-fast", "--out", "o"]


@pytest.mark.parametrize("argv,level", [
    (DRIFT, logging.INFO), (["-q", *DRIFT], logging.WARNING), (["--quiet", *DRIFT], logging.WARNING),
    ([*DRIFT, "--quiet"], logging.INFO), (["-v", *DRIFT], logging.DEBUG), (["--verbose", *DRIFT], logging.DEBUG),
    (["plot", "r.json", "--out", "f.png", "-v"], logging.DEBUG), (["plot", "r.json", "--out", "f.png", "--quiet"],
                                                                 logging.INFO),  # a command's --quiet: no bar
    (["run", "x.toml", "-vv"], logging.DEBUG), (["-q", "scenario", "list"], logging.WARNING),
    (["-q", "-v", *DRIFT], logging.DEBUG),
])
def test_the_flags_give_the_level(argv, level):
    assert log_level(build_parser().parse_args(argv)) == level


def _logging_list(args):
    log = logging.getLogger("metacomm.cli.test")
    log.debug("a debug record")
    log.info("an info record")
    log.warning("a warning record")
    return 0


@pytest.mark.parametrize("argv,out,err", [
    (["scenario", "list"], ["an info record"], ["metacomm: warning: a warning record"]),
    (["-q", "scenario", "list"], [], ["metacomm: warning: a warning record"]),
    (["-v", "scenario", "list"], ["a debug record", "an info record"], ["metacomm: warning: a warning record"]),
])
def test_records_reach_the_streams_by_level(monkeypatch, capsys, argv, out, err):
    monkeypatch.setattr(scenario_cmd, "_list", _logging_list)
    logger = logging.getLogger("metacomm")
    before = (logger.level, list(logger.handlers))
    assert main(argv) == 0
    got = capsys.readouterr()
    assert got.out.splitlines() == out and got.err.splitlines() == err
    assert (logger.level, list(logger.handlers)) == before  # restored: no handler left behind
