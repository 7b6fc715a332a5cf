"""Every command takes --threads N (default 1) and the CLI applies it before any work."""

import pytest
import torch

from metacomm.cli.main import SUBCOMMANDS, build_parser, main


def test_every_command_has_a_threads_flag_defaulting_to_one():
    parser = build_parser()
    for name, p in parser.commands.items():
        action = p._option_string_actions.get("--threads")
        assert action is not None, name
        assert str(action.default) == "1", name
    assert set(parser.commands) == set(SUBCOMMANDS)


@pytest.mark.parametrize("n", [1, 2])
def test_threads_are_applied(tmp_path, n):
    before = torch.get_num_threads()
    try:
        assert main(["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0", "--max-blocks", "100",
                     "--quiet", "--threads", str(n), "--out", str(tmp_path / "b")]) == 0
        assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
