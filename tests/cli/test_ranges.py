"""One meaning of a range everywhere: START:STOP:STEP with STOP included when it is on the grid (the dB grids'
reading); a two-number A:B, which --seeds read as A..B-1 before, is refused with both spellings; a seeds run says
which seeds it ran."""

import pytest

from metacomm import ConfigError
from metacomm.experiments._common import MAX_RANGE, int_list, int_range, parse_seeds


@pytest.mark.parametrize("spec,expected", [
    ("0:7:1", list(range(8))), ("0:8:2", [0, 2, 4, 6, 8]), ("0:9:4", [0, 4, 8]), ("3:3:1", [3]),
    ("1:2:3", [1]), ("0:3:1,10", [0, 1, 2, 3, 10]), ("5", [5]), ("2,0,1", [2, 0, 1]), (" 0 : 2 : 1 ", [0, 1, 2]),
])
def test_seed_ranges_include_their_stop(spec, expected):
    assert parse_seeds(spec) == expected


def test_the_seed_range_matches_the_db_grid_reading():
    """The same text means the same points for --seeds and --ebno-db (the BER flags users already script)."""
    from metacomm.experiments.ber import parse_ebno_range
    for spec in ("0:10:1", "0:8:2", "0:9:4", "3:3:1", "1:2:3"):
        assert parse_seeds(spec) == [int(v) for v in parse_ebno_range(spec)], spec
    with pytest.raises(ConfigError):
        parse_ebno_range("0:8")  # the dB grids never took a two-number range either


@pytest.mark.parametrize("spec,old", [("0:8", "0:7:1"), ("2:5", "2:4:1"), ("0:1", "0:0:1")])
def test_a_two_number_seed_range_is_refused_with_both_readings(spec, old):
    lo, hi = spec.split(":")
    with pytest.raises(ConfigError) as e:
        parse_seeds(spec)
    msg = str(e.value)
    assert e.value.field == "seeds" and old in msg and f"{lo}:{hi}:1" in msg and "A..B-1" in msg, msg


@pytest.mark.parametrize("spec", ["4:2:1", "0:4:0", "0:4:-1", "0:1:1:1", "a:2:1", "-1:2:1", "0:2:1,1", "0:2:x",
                                  "2:2"])
def test_bad_seed_ranges_are_refused(spec):
    with pytest.raises(ConfigError) as e:
        parse_seeds(spec)
    assert e.value.field == "seeds"


def test_a_huge_range_is_refused_before_it_is_built():
    with pytest.raises(ConfigError, match="more than"):
        parse_seeds(f"0:{10 ** 12}:1")
    with pytest.raises(ConfigError, match="more than"):
        int_range("steps", f"0:{MAX_RANGE}:1")
    assert len(int_range("steps", f"1:{MAX_RANGE}:1")) == MAX_RANGE


def test_integer_lists_take_the_same_ranges():
    assert int_list("steps", "0:10:5,100", minimum=0) == [0, 5, 10, 100]
    assert int_list("pilots", "1:4:1,16", minimum=1) == [1, 2, 3, 4, 16]
    assert int_list("steps", [3, 1], minimum=0) == [1, 3]
    with pytest.raises(ConfigError, match="needs its step") as e:
        int_list("steps", "0:10", minimum=0)
    assert e.value.field == "steps" and "0:10:1" in str(e.value)
    with pytest.raises(ConfigError, match=">= 1"):
        int_list("pilots", "0:2:1", minimum=1)


def test_the_cli_refuses_an_old_seed_range_in_one_line_before_any_work(tmp_path, capsys):
    from metacomm.cli.main import main
    out = tmp_path / "o"
    assert main(["drift", "--scenario", "doppler-fast", "--seeds", "0:8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --seeds:" in err and "0:7:1" in err and "0:8:1" in err, err
    assert not out.exists()


def test_a_fewshot_range_is_read_by_the_same_parser(tmp_path, capsys):
    from metacomm.cli.main import main
    assert main(["fewshot", "--checkpoint", str(tmp_path / "none.pt"), "--steps", "0:10", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps" in err and "0:10:1" in err, err


@pytest.mark.parametrize("seeds,text", [([0, 1, 2, 3], "4 seeds: 0..3"), ([5], "1 seed: 5"),
                                        ([0, 1, 2, 3, 10], "5 seeds: 0..3, 10"), ([4, 2, 3], "3 seeds: 4, 2, 3"),
                                        ([0, 1, 7, 8, 9], "5 seeds: 0, 1, 7..9")])
def test_the_seeds_a_run_states(seeds, text):
    from metacomm.cli.commands.drift import describe_seeds
    assert describe_seeds(seeds) == text


def test_a_seeds_run_prints_the_seeds_it_ran(tmp_path, capsys):
    from metacomm.cli.main import main
    out = tmp_path / "s"
    argv = ["drift", "--scenario", "doppler-fast", "--frames", "2", "--links", "1", "--payload", "2", "--pilots",
            "16", "--schemes", "pilot-ls,genie", "--quiet", "--seeds", "3:5:2", "--out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "2 seeds: 3, 5 pooled" in stdout, stdout
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("seed-")) == ["seed-3", "seed-5"]
