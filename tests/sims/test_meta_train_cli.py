"""`metacomm meta-train --support-pilots`: reaches the scenario config (stored in the checkpoint) or exits 2."""

import pytest
import torch

from metacomm.sims.cli import main


@pytest.mark.parametrize("scenario, key", [("iq-demod", "support_pilots"), ("fading-ae", "messages_per_task")])
def test_support_pilots_is_stored_in_the_scenario_config(tmp_path, scenario, key):
    out = tmp_path / "meta.pt"
    rc = main(["meta-train", "--scenario", scenario, "--support-pilots", "4", "--meta-steps", "1",
               "--joint-steps", "0", "--val-every", "0", "--quiet", "--out", str(out)])
    assert rc == 0
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["scenario_config"][key] == 4


def test_iq_support_pilots_leave_the_rest_of_the_stored_pilots_as_query(tmp_path):
    out = tmp_path / "meta.pt"
    assert main(["meta-train", "--scenario", "iq-demod", "--support-pilots", "64", "--meta-steps", "1",
                 "--joint-steps", "0", "--val-every", "0", "--quiet", "--out", str(out)]) == 0
    cfg = torch.load(out, weights_only=False)["scenario_config"]
    assert (cfg["support_pilots"], cfg["query_pilots"], cfg["pilots_per_device"]) == (64, 96, 160)


@pytest.mark.parametrize("value", ["0", "-3", "160"])
def test_bad_support_pilots_exit_2(tmp_path, capsys, value):
    out = tmp_path / "meta.pt"
    rc = main(["meta-train", "--scenario", "iq-demod", "--support-pilots", value, "--meta-steps", "1",
               "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--support-pilots" in err[0]
    assert not out.exists()
