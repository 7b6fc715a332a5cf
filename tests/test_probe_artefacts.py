"""Regression tests of a hostile-user probe of the artefact layer (metacomm.artefacts and its readers).

Each case failed before the fix -- a score computed from NaN weights, a traceback, a warning, a write through a
planted link, a read that never returned -- and must now end in one ``ConfigError`` line (exit code 2 on the command
line) naming the field. Hostile files are made from real ones: the shipped checkpoints (loaded with
``torch.load(weights_only=True)``, edited, written back with :func:`metacomm.artefacts.save_checkpoint`) and the
output of real runs; each shape test has a control (the unedited file is accepted), so a refusal for another reason
cannot pass for the fix.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import warnings
from pathlib import Path

import pytest
import torch

from metacomm import ConfigError
from metacomm import artefacts as A
from metacomm.cli.main import main

CKPTS = Path(__file__).resolve().parents[1] / "metacomm" / "checkpoints"
ONLINE = CKPTS / "online_drift_k8n8.pt"  # metacomm-online-meta: the drift command's default codec
META = CKPTS / "drift_track_doppler-slow_p1.pt"  # metacomm-meta (meta-train --scenario drift)


def _raw(path):
    return torch.load(path, weights_only=True)


def _edited(src, dst, edit, kind):
    payload = _raw(src)
    edit(payload)
    return str(A.save_checkpoint(dst, payload, kind=kind))


def _cli(argv, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


def _refused(argv, capsys, flag, *needles):
    rc, err = _cli(argv, capsys)
    assert rc == 2, (rc, err)
    assert len(err) == 1 and f"error: {flag}: " in err[0], err
    for n in needles:
        assert n in err[0], err
    return err[0]


def _set_nan(path_in_payload, index=3, value=math.nan):
    def edit(p):
        d = p
        for k in path_in_payload[:-1]:
            d = d[k]
        t = d[path_in_payload[-1]].clone()
        t.view(-1)[index] = value
        d[path_in_payload[-1]] = t
    return edit


# ------------------------------------------------------------------------------------------------------------
# 1. non-finite weights are refused at load
# ------------------------------------------------------------------------------------------------------------

def test_the_shipped_checkpoints_load_with_the_finiteness_check():
    import metacomm.drift.schemes.label_noise  # noqa: F401  (registers the dd-mwnet kind)
    for f in sorted(CKPTS.glob("*.pt")):
        kinds = [k for k, _ in A.tags_of(_raw(f)) if k in A.KINDS]
        A.load_checkpoint(f, kinds=kinds, field="checkpoint")


def test_nan_weights_are_refused_naming_the_entry_and_the_first_bad_value(tmp_path):
    from metacomm.scenarios.online_drift import load_meta
    bad = _edited(ONLINE, tmp_path / "x.pt", _set_nan(["model", "decoder.taps"]), "metacomm-online-meta")
    with pytest.raises(ConfigError) as e:
        load_meta(bad)
    assert e.value.field == "checkpoint"
    assert str(e.value).startswith(f"checkpoint: {bad}: non-finite weights in model/decoder.taps "
                                   "(first at index 3: nan")
    assert "\n" not in str(e.value)
    inf = _edited(ONLINE, tmp_path / "y.pt", _set_nan(["model", "decoder.templates"], 17, -math.inf),
                  "metacomm-online-meta")
    with pytest.raises(ConfigError, match=r"model/decoder.templates \(first at index \(1, 1\): -inf"):
        load_meta(inf)


def test_nan_weights_refused_by_ber(tmp_path, capsys):
    from metacomm.codecs.autoencoder import Autoencoder
    from metacomm.codecs.checkpoint import save_codec
    good = save_codec(tmp_path / "ae.pt", Autoencoder(4, 7), {"channel": "awgn", "channel_kwargs": {},
                                                               "train_ebno_db": 7.0})
    name = next(iter(_raw(good)["state_dict"]))
    bad = _edited(good, tmp_path / "nan.pt", _set_nan(["state_dict", name], 0), "metacomm-codec")
    _refused(["ber", "--codec", "ae", "--channel", "awgn", "--checkpoint", bad, "--ebno-db", "0", "--quiet",
              "--out", tmp_path / "out"], capsys, "--checkpoint", f"non-finite weights in state_dict/{name}")
    assert not (tmp_path / "out" / "results.json").exists()


def test_nan_weights_refused_by_fewshot_drift_and_export(tmp_path, capsys):
    # (the selected initialisation's weights are the same objects as the trainer's best: reported as best/model)
    meta = _edited(META, tmp_path / "meta.pt", _set_nan(["init", "model", "decoder.taps"]), "metacomm-meta")
    online = _edited(ONLINE, tmp_path / "online.pt", _set_nan(["model", "decoder.taps"]), "metacomm-online-meta")
    _refused(["fewshot", "--checkpoint", meta, "--schemes", "meta", "--pilots", "2", "--steps", "1",
              "--test-channels", "2", "--test-blocks", "16", "--out", tmp_path / "fs"], capsys, "--checkpoint",
             "/model/decoder.taps (first at index 3: nan")
    _refused(["drift", "--scenario", "doppler-slow", "--checkpoint", online, "--frames", "2", "--quiet",
              "--out", tmp_path / "dr"], capsys, "--checkpoint", "non-finite weights in model/decoder.taps")
    _refused(["drift", "--scenario", "doppler-slow", "--checkpoint", meta, "--frames", "2", "--quiet",
              "--out", tmp_path / "dr"], capsys, "--checkpoint", "non-finite weights in best/model/decoder.taps")
    _refused(["export", "--checkpoint", meta, "--bits", "4", "--out", tmp_path / "c.onnx"], capsys,
             "--checkpoint", "non-finite weights")
    assert not (tmp_path / "c.onnx").exists() and not (tmp_path / "dr" / "results.json").exists()


def test_only_weights_are_scanned_and_run_states_opt_out(tmp_path):
    # optimiser moments and the trainer's history are no weights (a diverged validation loss is inf there)
    def edit(p):
        st = p["optimizer"]["state"][0]
        st["exp_avg"] = torch.full_like(st["exp_avg"], math.inf)
        p["history"][0]["loss"] = math.inf
    ok = _edited(META, tmp_path / "ok.pt", edit, "metacomm-meta")
    assert math.isinf(A.load_checkpoint(ok, kinds="metacomm-meta", field="checkpoint")["history"][0]["loss"])
    # a drift run state resumes exactly what the run reached, non-finite or not
    state = {"settings": {}, "finished": False,
             "run": {"position": 0, "records": [], "schemes": {"warm": {"fast": torch.tensor([math.nan])}}}}
    p = A.save_checkpoint(tmp_path / "run-state.pt", state, kind="metacomm-drift-run")
    got = A.load_checkpoint(p, kinds="metacomm-drift-run", field="resume", allow_partial=True)
    assert torch.isnan(got["run"]["schemes"]["warm"]["fast"]).all()
    # the joint baseline's weights are weights
    bad = _edited(META, tmp_path / "joint.pt", _set_nan(["joint", "model", "decoder.bias"], 0), "metacomm-meta")
    with pytest.raises(ConfigError, match="non-finite weights in joint/model/decoder.bias"):
        A.load_checkpoint(bad, kinds="metacomm-meta", field="checkpoint")


# ------------------------------------------------------------------------------------------------------------
# 2. well-formed checkpoints with missing or mistyped entries: one line, no traceback
# ------------------------------------------------------------------------------------------------------------

def _del(key):
    def edit(p):
        del p[key]
    return edit


def _put(key, value):
    def edit(p):
        p[key] = value
    return edit


def test_a_meta_checkpoint_without_its_scenario_is_refused_by_every_reader(tmp_path, capsys):
    bad = _edited(META, tmp_path / "m.pt", _del("scenario"), "metacomm-meta")
    want = "damaged metacomm meta-train checkpoint: the entry 'scenario' is missing"
    _refused(["fewshot", "--checkpoint", bad, "--out", tmp_path / "fs"], capsys, "--checkpoint", want)
    _refused(["export", "--checkpoint", bad, "--bits", "4", "--out", tmp_path / "c.onnx"], capsys,
             "--checkpoint", want)
    _refused(["pack", "compression", "--base", bad, "--quiet", "--out", tmp_path / "pk"], capsys, "--base", want)
    _refused(["drift", "--scenario", "doppler-slow", "--checkpoint", bad, "--frames", "2", "--quiet",
              "--out", tmp_path / "dr"], capsys, "--checkpoint", want)


@pytest.mark.parametrize("entries, want", [
    ({"scenario_config": [1, 2]}, "'scenario_config' must be a dict, got a list of 2"),  # was: TypeError
    ({"init": {"step": 3}}, "the entry 'init/model' is missing"),  # was: KeyError 'model'
    ({"meta_config": [1]}, "'meta_config' must be a dict, got a list of 1"),  # was: AttributeError
    ({"joint": 7, "joint_steps": 1, "joint_init": None}, "'joint' must be a dict or null, got the number 7"),
])
def test_mistyped_meta_entries_are_named(tmp_path, capsys, entries, want):
    bad = _edited(META, tmp_path / "m.pt", lambda p: p.update(entries), "metacomm-meta")
    _refused(["drift", "--scenario", "doppler-slow", "--checkpoint", bad, "--frames", "2", "--quiet",
              "--out", tmp_path / "dr"], capsys, "--checkpoint", want)
    if "joint" not in entries:
        _refused(["export", "--checkpoint", bad, "--bits", "4", "--out", tmp_path / "c.onnx"], capsys,
                 "--checkpoint", want)


def test_an_online_checkpoint_without_config_is_refused(tmp_path, capsys):
    bad = _edited(ONLINE, tmp_path / "o.pt", _del("config"), "metacomm-online-meta")
    _refused(["drift", "--scenario", "doppler-slow", "--checkpoint", bad, "--frames", "2", "--quiet",
              "--out", tmp_path / "dr"], capsys, "--checkpoint", "the entry 'config' is missing")


def test_a_codec_checkpoint_with_mistyped_weights_is_refused(tmp_path):
    from metacomm.codecs.autoencoder import Autoencoder
    from metacomm.codecs.checkpoint import load_codec, save_codec
    good = save_codec(tmp_path / "ae.pt", Autoencoder(4, 7), {})
    bad = _edited(good, tmp_path / "bad.pt", _put("meta", 5), "metacomm-codec")  # was: TypeError
    with pytest.raises(ConfigError, match="'meta' must be a dict or null, got the number 5") as e:
        load_codec(bad)
    assert e.value.field == "checkpoint"
    bad = _edited(good, tmp_path / "bad2.pt", _put("state_dict", [1]), "metacomm-codec")
    with pytest.raises(ConfigError, match="'state_dict' must be a dict, got a list of 1"):
        load_codec(bad)


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory):
    """A finished single drift run with its run state (OUT/run-state.pt) and results."""
    out = tmp_path_factory.mktemp("drift") / "run"
    argv = ["drift", "--scenario", "doppler-slow", "--pilots", "3", "--frames", "3", "--links", "2", "--payload",
            "8", "--schemes", "pilot-ls,genie", "--quiet", "--save-every", "1", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_drift_resume_with_a_mistyped_run_state_is_one_line(drift_run, tmp_path, capsys):
    src, argv = drift_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    argv = [a if a != str(src) else str(out) for a in argv] + ["--resume"]
    state = _raw(out / "run-state.pt")
    state["run"]["records"] = 5
    A.save_checkpoint(out / "run-state.pt", state, kind="metacomm-drift-run")
    _refused(argv, capsys, "--resume", "'run/records' must be a list of dicts, got the number 5")


# ------------------------------------------------------------------------------------------------------------
# 3. hostile results files for `metacomm plot` and --resume
# ------------------------------------------------------------------------------------------------------------

def _fewshot_doc():
    rows = [{"scheme": "meta", "pilots": 16, "steps": st, "bler": b, "bler_ci": [b / 2, min(1.0, b * 2)],
             "block_errors": 1, "blocks": 10} for st, b in ((0, 0.5), (1, 0.1))]
    return {"config": {"pilots": [16], "steps": [0, 1]}, "results": rows}


def _plot(path, tmp_path, capsys):
    return _cli(["plot", path, "--out", tmp_path / "fig.png"], capsys)


def test_plot_control_a_well_formed_record_table_plots(tmp_path, capsys):
    A.write_json(tmp_path / "f" / "results.json", _fewshot_doc(), kind="metacomm-fewshot")
    assert _plot(tmp_path / "f", tmp_path, capsys)[0] == 0


def test_deeply_nested_json_is_one_line(tmp_path, capsys):
    f = tmp_path / "results.json"
    depth = 100_000
    f.write_text('{"format": "metacomm-fewshot/1", "x": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ConfigError, match="nested too deeply") as e:
        A.read_json(f, kind="metacomm-fewshot", field="resume")
    assert e.value.field == "resume"
    _refused(["plot", f, "--out", tmp_path / "fig.png"], capsys, "RESULTS", "nested too deeply")
    # an output directory holding such a file is judged foreign, not crashed on
    with pytest.raises(ConfigError, match="exists and is not a metacomm few-shot results file"):
        A.check_output_dir(tmp_path, results="results.json", kind="metacomm-fewshot")


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_beyond_a_double_are_refused(tmp_path, capsys, number):
    text = json.dumps({"format": "metacomm-fewshot/1", **_fewshot_doc()})
    f = tmp_path / "f" / "results.json"
    f.parent.mkdir()
    f.write_text(text.replace('"bler": 0.5', f'"bler": {number}', 1))
    with pytest.raises(ConfigError, match="out of range"):
        A.read_json(f, kind="metacomm-fewshot", field="resume")
    _refused(["plot", f, "--out", tmp_path / "fig.png"], capsys, "RESULTS", "out of range")


def test_a_results_entry_that_is_a_number_is_one_line(tmp_path, capsys):
    from metacomm.experiments.packs import write_pack_results
    A.write_json(tmp_path / "f" / "results.json", {"config": {}, "results": 5}, kind="metacomm-fewshot")
    _refused(["plot", tmp_path / "f", "--out", tmp_path / "fig.png"], capsys, "RESULTS",
             "'results' must be a list of dicts, got the number 5")
    # a pack's results (its kind declares no schema here): the plot checks the shape it draws
    write_pack_results(str(tmp_path / "c"), "compression", {"bits": [8]}, [])
    doc = json.loads((tmp_path / "c" / "results.json").read_text())
    for bad, want in ((5, "'results' must be a list of"), ([{"bits": 8}, 3], "'results[1]' must be a")):
        doc["results"] = bad
        (tmp_path / "c" / "results.json").write_text(json.dumps(doc))
        _refused(["plot", tmp_path / "c", "--out", tmp_path / "fig.png"], capsys, "RESULTS", want)
    doc["results"] = [{"bits": 8, "bler": 0.1, "bler_ci": ["a", "b"]}, {"bits": 4, "bler": 0.2, "bler_ci": None}]
    (tmp_path / "c" / "results.json").write_text(json.dumps(doc))  # malformed intervals: drawn without error bars
    assert _plot(tmp_path / "c", tmp_path, capsys)[0] == 0


def _pooled_doc():
    row = {"block_errors": 10, "blocks": 100, "bit_errors": 20, "bits": 400, "bler": 0.1, "ber": 0.05,
           "frames_above_target": 0, "latency_ms_mean": None, "kind": "reference"}
    return {"config": {"seeds": [0, 1], "seed_dirs": {"0": "seed-0", "1": "seed-1"}}, "finished": True,
            "progress": {"key": {}, "done": 2, "total": 2, "seeds_done": [0, 1]},
            "seeds": {"0": {"genie": row}, "1": {"genie": row}},
            "summary": {"genie": {"kind": "reference", "bler": 0.1, "bler_ci": [0.07, 0.13], "ber": 0.05,
                                  "ber_ci": [0.04, 0.06], "block_errors": 20, "blocks": 200, "bit_errors": 40,
                                  "bits": 800, "seeds": [0, 1], "seed_bler": [0.1, 0.1], "seed_bler_mean": 0.1,
                                  "seed_bler_sd": 0.0, "seed_bler_min": 0.1, "seed_bler_max": 0.1,
                                  "seed_bler_ci": [0.1, 0.1], "frames_above_target": 0, "frames": 4,
                                  "latency_ms_mean": None}}}


@pytest.mark.parametrize("edit, want", [
    (lambda d: d.update(seeds=[0, 1]), "'seeds' must be a dict, got a list of 2"),
    (lambda d: d["summary"]["genie"].update(seeds=[0, 5], seed_bler=[0.1, 0.1]), "'seeds/5/genie'"),
    (lambda d: d["summary"]["genie"].update(bler_ci=[0.1]), "bler_ci must be [lo, hi]"),
    (lambda d: d.update(summary={"genie": 3}), "'summary/genie' must be a dict, got the number 3"),
])
def test_a_malformed_pooled_file_is_one_line(tmp_path, capsys, edit, want):
    A.write_json(tmp_path / "ok" / "results.json", _pooled_doc(), kind="metacomm-drift-seeds")
    assert _plot(tmp_path / "ok", tmp_path, capsys)[0] == 0  # control
    doc = _pooled_doc()
    edit(doc)
    A.write_json(tmp_path / "p" / "results.json", doc, kind="metacomm-drift-seeds")
    _refused(["plot", tmp_path / "p", "--out", tmp_path / "fig.png"], capsys, "RESULTS", want)


def test_a_pooled_file_with_listed_seed_dirs_is_one_line_when_mixed_with_a_run(drift_run, tmp_path, capsys):
    src, _ = drift_run
    A.write_json(tmp_path / "ok" / "results.json", _pooled_doc(), kind="metacomm-drift-seeds")
    rc, err = _cli(["plot", tmp_path / "ok", src, "--out", tmp_path / "fig.png"], capsys)
    assert rc == 2 and "pools several seeds" in err[0]  # control: the hint names its seed directories
    doc = _pooled_doc()
    doc["config"]["seed_dirs"] = ["seed-0"]  # was: AttributeError while writing that hint
    A.write_json(tmp_path / "p" / "results.json", doc, kind="metacomm-drift-seeds")
    _refused(["plot", tmp_path / "p", src, "--out", tmp_path / "fig.png"], capsys, "RESULTS",
             "'config/seed_dirs' must be a dict or null")


def test_a_drift_file_whose_frames_disagree_is_one_line(drift_run, tmp_path, capsys):
    src, _ = drift_run
    assert _plot(src, tmp_path, capsys)[0] == 0  # control
    doc = json.loads((src / "results.json").read_text())
    doc["frames"][1]["schemes"].pop("genie")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "results.json").write_text(json.dumps(doc))
    _refused(["plot", tmp_path / "d", "--out", tmp_path / "fig.png"], capsys, "RESULTS", "'frames[1]' has schemes")
    doc = json.loads((src / "results.json").read_text())
    doc["frames"][0]["schemes"]["genie"]["blocks"] = 0  # was: a RuntimeWarning (0/0) and a NaN curve
    (tmp_path / "d" / "results.json").write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _refused(["plot", tmp_path / "d", "--window", "1", "--out", tmp_path / "fig.png"], capsys, "RESULTS",
                 "blocks >= 1")
    doc["frames"] = {"0": {}}
    (tmp_path / "d" / "results.json").write_text(json.dumps(doc))
    _refused(["plot", tmp_path / "d", "--out", tmp_path / "fig.png"], capsys, "RESULTS",
             "'frames' must be a list")


def test_a_ber_file_of_the_wrong_shape_names_results(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(json.dumps({"config": {"format": "metacomm-results/1"},
                                                             "points": {"a": 1}}))
    _refused(["plot", tmp_path / "b", "--out", tmp_path / "fig.png"], capsys, "RESULTS", "'points' must be a list")
    (tmp_path / "b" / "results.json").write_text(json.dumps({"config": {}, "points": [3]}))  # untagged
    _refused(["plot", tmp_path / "b", "--out", tmp_path / "fig.png"], capsys, "RESULTS", "points[0]")


# ------------------------------------------------------------------------------------------------------------
# 4. planted directory links inside the output tree
# ------------------------------------------------------------------------------------------------------------

def test_drift_seeds_refuses_a_planted_seed_directory_link(tmp_path, capsys):
    out, victim = tmp_path / "ds", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    os.symlink(victim, out / "seed-1")
    _refused(["drift", "--scenario", "doppler-slow", "--pilots", "3", "--frames", "2", "--links", "2", "--payload",
              "8", "--schemes", "pilot-ls,genie", "--quiet", "--seeds", "0,1", "--out", out], capsys, "--out",
             "seed-1", "symbolic link")
    assert list(victim.iterdir()) == [] and not (out / "results.json").exists()


def test_output_directory_and_results_links_are_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    os.symlink(real, link)
    with pytest.raises(ConfigError, match="is a symbolic link") as e:
        A.check_output_dir(link, results="results.json", kind="metacomm-drift")
    assert e.value.field == "out"
    with pytest.raises(ConfigError, match="is a symbolic link"):
        A.check_writable_dir(link)
    for write in (lambda p: A.write_json(p, {}, kind="metacomm-experiment"),
                  lambda p: A.write_text(p, "x"),
                  lambda p: A.save_checkpoint(p, {"config": {}, "model": {}}, kind="metacomm-online-meta")):
        with pytest.raises(ConfigError, match="is a symbolic link"):
            write(link / "results.json")
    assert list(real.iterdir()) == []
    # a link higher up the path is followed (the output directory itself is a real one)
    assert A.check_output_dir(link / "run", results="results.json", kind="metacomm-drift") == link / "run"
    A.write_text(link / "run" / "a.csv", "x")
    assert (real / "run" / "a.csv").read_text() == "x"
    # a results file that is a link (even to a metacomm file) is neither followed nor replaced
    d = tmp_path / "out"
    d.mkdir()
    A.write_json(real / "theirs.json", {"config": {}, "frames": []}, kind="metacomm-drift")
    os.symlink(real / "theirs.json", d / "results.json")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        A.check_output_dir(d, results="results.json", kind="metacomm-drift")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        A.write_json(d / "results.json", {"config": {}, "frames": []}, kind="metacomm-drift")
    assert (d / "results.json").is_symlink()


# ------------------------------------------------------------------------------------------------------------
# 5. a named pipe where a file is expected
# ------------------------------------------------------------------------------------------------------------

def _guarded(fn, fifo: Path, timeout: float = 30.0):
    """Run ``fn()`` in a thread; if it is still blocked after ``timeout`` s, release it (open the FIFO's write end)
    and fail."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(10)
        pytest.fail(f"blocked for {timeout} s reading the FIFO {fifo}")
    return box


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_refused_before_it_is_opened(tmp_path, capsys):
    fifo = tmp_path / "ck.pt"
    os.mkfifo(fifo)
    box = _guarded(lambda: A.load_checkpoint(fifo, kinds="metacomm-meta", field="checkpoint"), fifo)
    assert isinstance(box.get("error"), ConfigError), box
    assert "named pipe" in str(box["error"]) and box["error"].field == "checkpoint"
    box = _guarded(lambda: A.read_json(fifo, kind="metacomm-drift", field="resume"), fifo)
    assert isinstance(box.get("error"), ConfigError) and "named pipe" in str(box["error"]), box
    box = _guarded(lambda: _cli(["ber", "--codec", "ae", "--channel", "awgn", "--checkpoint", fifo, "--ebno-db",
                                 "0", "--quiet", "--out", tmp_path / "out"], capsys), fifo)
    rc, err = box["value"]
    assert rc == 2 and len(err) == 1 and "error: --checkpoint: " in err[0] and "named pipe" in err[0], err
    d = tmp_path / "out2"
    d.mkdir()
    os.mkfifo(d / "results.json")
    box = _guarded(lambda: A.check_output_dir(d, results="results.json", kind="metacomm-drift"), d / "results.json")
    assert isinstance(box.get("error"), ConfigError) and "named pipe" in str(box["error"]), box


# ------------------------------------------------------------------------------------------------------------
# the schema notation itself
# ------------------------------------------------------------------------------------------------------------

def test_schemas_are_checked_when_a_kind_registers_and_name_the_entry():
    with pytest.raises(ValueError, match="not a schema spec"):
        A.register_kind("metacomm-probe-bad", 1, "x", "y", schema={"a": 3})
    with pytest.raises(ValueError, match="exactly one item"):
        A.register_kind("metacomm-probe-bad", 1, "x", "y", schema={"a": [int, str]})
    assert "metacomm-probe-bad" not in A.KINDS
    schema = {"a": int, "b?": [{"c": (float, None)}], "d": {"*": str}}
    A.check_schema({"a": 1, "b": [{"c": None}, {"c": 2}], "d": {"x": "y"}}, schema, field="f")
    for obj, want in (({"b": [], "d": {}}, "the entry 'a' is missing"),
                      ({"a": True, "d": {}}, "'a' must be an integer, got true"),
                      ({"a": 1, "b": [{"c": "no"}], "d": {}}, "'b[0]/c' must be a number or null"),
                      ({"a": 1, "d": {"x": 1}}, "'d/x' must be a string, got the number 1")):
        with pytest.raises(ConfigError, match=want.replace("[", r"\[").replace("]", r"\]")) as e:
            A.check_schema(obj, schema, field="f", source="s", what="probe file")
        assert str(e.value).startswith("f: s: damaged probe file: ")
