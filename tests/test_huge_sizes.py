"""Sizes that cannot fit are refused up front with one line naming the flag (exit 2), before any work or output;
an allocator failure no check foresaw still ends in one line, not a traceback."""

from __future__ import annotations

import os

import pytest

from metacomm._validation import MEMORY_ENV, ConfigError, check_memory, memory_budget
from metacomm.cli.main import main

HUGE = "1000000000000"  # 10^12


@pytest.mark.parametrize("argv, flag", [
    (["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0", "--block-length", "100000000000"],
     "--block-length"),
    (["train", "--codec", "ae", "--n", "7", "--k", "4", "--hidden", "1000000000", "--train-ebno-db", "3"],
     "--hidden"),
    (["meta-train", "--scenario", "fading-ae", "--meta-batch", HUGE], "--meta-batch"),
    (["meta-train", "--scenario", "fading-ae", "--set", "num_taps=100000000"], "num_taps"),
    (["drift", "--scenario", "doppler-slow", "--payload", HUGE], "--payload"),
    (["drift", "--scenario", "doppler-slow", "--pilots", HUGE], "--pilots"),
    (["drift", "--scenario", "doppler-slow", "--links", HUGE], "--links"),
    (["drift", "--scenario", "doppler-slow", "--frames", HUGE], "--frames"),
    (["demo", "--frames", HUGE], "--frames"),
])
def test_huge_sizes_are_refused_up_front(tmp_path, capsys, argv, flag):
    out = tmp_path / ("o.pt" if argv[0] in ("train", "meta-train") else "o")
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"error: {flag}:" in err[0], err
    assert not out.exists()


def test_fewshot_pilots_refused_before_the_checkpoint_is_read(tmp_path, capsys):
    assert main(["fewshot", "--checkpoint", str(tmp_path / "none.pt"), "--pilots", HUGE,
                 "--out", str(tmp_path / "o")]) == 2
    assert "error: --pilots:" in capsys.readouterr().err


def test_budget_env_override_and_bad_values(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "2")
    assert memory_budget() == 2 * 2**30
    check_memory("x", 2 * 2**30, "exactly the budget")
    with pytest.raises(ConfigError) as e:
        check_memory(("x", "y"), 2 * 2**30 + 1, "one byte more")
    assert e.value.field == "x" and "reduce x, y" in str(e.value) and e.value.fields == ("x", "y")
    with pytest.raises(ConfigError):
        check_memory("x", float("nan"), "an estimate that went wrong")
    for bad in ("-1", "0", "lots", "nan"):
        monkeypatch.setenv(MEMORY_ENV, bad)
        with pytest.raises(ConfigError) as e:
            memory_budget()
        assert e.value.field == MEMORY_ENV
    monkeypatch.delenv(MEMORY_ENV)
    assert 0 < memory_budget() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_an_unforeseen_allocator_failure_is_one_line(monkeypatch, capsys, tmp_path):
    import metacomm.experiments.ber as ber

    def boom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 800000000000 bytes")
    monkeypatch.setattr(ber, "run_ber", boom)
    import metacomm.cli.commands.ber as cmd
    monkeypatch.setattr(cmd, "run_ber", boom, raising=False)
    rc = main(["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "out of memory" in err[0], err


def test_other_runtime_errors_are_not_swallowed(monkeypatch, tmp_path):
    import metacomm.cli.commands.ber as cmd

    def bug(*a, **k):
        raise RuntimeError("a real bug")
    monkeypatch.setattr(cmd, "run_ber", bug, raising=False)
    with pytest.raises(RuntimeError, match="a real bug"):
        main(["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0", "--out", str(tmp_path / "o")])
