"""`metacomm meta-train --support-pilots`: reaches the scenario config (stored in the checkpoint) or exits 2."""

import pytest
import torch

from metacomm.cli.main import main


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


def test_fewshot_refuses_the_periodic_checkpoint_of_an_interrupted_run_unless_allow_partial(tmp_path, capsys,
                                                                                          monkeypatch):
    """A meta-train run killed at step 4 of 8 leaves its periodic checkpoint (joint baseline never trained);
    fewshot must not evaluate it as if finished: exit 2 naming --allow-partial, and with the flag the output and
    results.json say that the checkpoint is unfinished. The finished file is accepted without the flag."""
    import json

    from metacomm.adaptation.trainer import MetaTrainer
    out = tmp_path / "meta.pt"
    orig = MetaTrainer.step

    def crash_at_5(self):
        if self.step_count == 4:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(MetaTrainer, "step", crash_at_5)
    argv = ["meta-train", "--scenario", "iq-demod", "--meta-steps", "8", "--checkpoint-every", "2",
            "--val-every", "0", "--quiet", "--out", str(out)]
    assert main(argv) == 130 and out.exists()
    monkeypatch.setattr(MetaTrainer, "step", orig)
    partial = torch.load(out, weights_only=True)
    assert partial["finished"] is False and partial["step"] == 4
    fs = ["fewshot", "--checkpoint", str(out), "--pilots", "2", "--steps", "0,1", "--test-channels", "2",
          "--test-blocks", "32", "--genie-steps", "2", "--schemes", "meta,random", "--out", str(tmp_path / "fs")]
    capsys.readouterr()
    assert main(fs) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "--allow-partial" in err[0], err
    assert main([*fs, "--allow-partial"]) == 0
    assert "unfinished" in capsys.readouterr().out
    res = json.loads((tmp_path / "fs" / "results.json").read_text())
    assert res["config"]["checkpoint_finished"] is False
    # resume finishes it; then fewshot takes it without the flag
    assert main([*argv, "--resume", str(out)]) == 0
    assert torch.load(out, weights_only=True)["finished"] is True
    assert main(fs) == 0
    res = json.loads((tmp_path / "fs" / "results.json").read_text())
    assert res["config"]["checkpoint_finished"] is True


def test_meta_train_protects_an_existing_out_and_refuses_a_resume_with_other_settings(tmp_path, capsys):
    out = tmp_path / "meta.pt"
    base = ["meta-train", "--scenario", "iq-demod", "--meta-steps", "2", "--joint-steps", "0", "--val-every", "0",
            "--quiet"]
    assert main([*base, "--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main([*base, "--out", str(out)]) == 2  # forgot --resume: the earlier run is not replaced
    err = capsys.readouterr().err
    assert "--out" in err and "--resume" in err and "--overwrite" in err and out.read_bytes() == before
    assert main([*base, "--meta-batch", "7", "--resume", str(out), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "meta_batch" in err and out.read_bytes() == before
    assert main([*base, "--inner-lr", "0.2", "--resume", str(out), "--out", str(out)]) == 2
    assert "inner_lr" in capsys.readouterr().err
    assert main([*base, "--meta-steps", "4", "--resume", str(out), "--out", str(out)]) == 0  # may grow
    assert torch.load(out, weights_only=True)["step"] == 4
    assert main([*base, "--overwrite", "--out", str(out)]) == 0
    assert torch.load(out, weights_only=True)["step"] == 2


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b'{"kind": "metacomm-meta/1"}', b"PK\x03\x04garbage", None])
def test_resume_from_a_broken_file_or_a_directory_exits_2_with_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    if content is None:
        bad.mkdir()
    else:
        bad.write_bytes(content)
    rc = main(["meta-train", "--scenario", "iq-demod", "--meta-steps", "2", "--quiet", "--resume", str(bad),
               "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--resume" in err[0], err
