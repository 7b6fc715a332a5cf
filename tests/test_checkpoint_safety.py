"""Opening a checkpoint never runs code from it, and every results file is strict JSON.

A crafted checkpoint -- a pickle whose unpickling calls ``builtins.exec`` (via ``__reduce__``) to write a marker
file -- is handed to every command that takes a checkpoint and to every library loader. Loading with
``torch.load(weights_only=True)`` refuses it: the marker must stay absent, and the user gets exit code 2 and one
line naming the flag. A positive control shows that the same file *does* run its code under
``weights_only=False``, so the marker check can fail.

The second half runs ``ber``, ``fewshot``, ``drift`` and ``demo`` briefly and parses each ``results.json`` with a
strict parser (``NaN``/``Infinity`` tokens refused).
"""

from __future__ import annotations

import builtins
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from metacomm import ConfigError
from metacomm.cli.main import build_parser, main


class _Exploit:
    """Unpickles to ``exec(code)``: the code writes ``marker``."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('code ran')"

    def __reduce__(self):
        return (builtins.exec, (self.code,))


# Dressed as each kind of metacomm checkpoint, so that a loader checking only the tag would still be fooled.
DISGUISE = {"kind": "metacomm-meta/1", "format": "metacomm-meta-trainer/1", "scenario": "iq-demod",
            "codec_class": "Autoencoder", "config": {}, "state_dict": {}, "model": {}}


def _write_exploit(path: Path, marker: Path, variant: str) -> Path:
    if variant == "torch-zip":  # the current torch.save format (a zip holding data.pkl)
        torch.save({**DISGUISE, "payload": _Exploit(marker)}, path)
    else:  # a bare pickle (torch's legacy path)
        path.write_bytes(pickle.dumps({**DISGUISE, "payload": _Exploit(marker)}, protocol=2))
    return path


VARIANTS = ("torch-zip", "raw-pickle")


@pytest.fixture(params=VARIANTS)
def exploit(request, tmp_path):
    marker = tmp_path / "MARKER"
    path = _write_exploit(tmp_path / "evil.pt", marker, request.param)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("variant", VARIANTS)
def test_positive_control_the_exploit_runs_without_weights_only(variant, tmp_path):
    marker = tmp_path / "MARKER"
    path = _write_exploit(tmp_path / "evil.pt", marker, variant)
    try:
        torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - the raw pickle fails torch's header check *after* running the code
        pass
    assert marker.read_text() == "code ran"


# --- every command that takes a checkpoint --------------------------------------------------------------------

def _argv(cmd: str, flag: str, ckpt: Path, out: Path) -> list[str]:
    if (cmd, flag) == ("drift", "--resume"):  # the run state is read from OUT/run-state.pt
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(ckpt, out / "run-state.pt")
        return ["drift", "--scenario", "doppler-fast", "--frames", "2", "--quiet", "--save-every", "1", "--resume",
                "--out", str(out)]
    return {
        "fewshot": ["fewshot", "--checkpoint", str(ckpt), "--out", str(out)],
        "meta-train": ["meta-train", "--scenario", "iq-demod", "--meta-steps", "1", "--joint-steps", "0",
                       "--checkpoint-every", "0", "--quiet", "--resume", str(ckpt),
                       "--out", str(out.parent / "m.pt")],
        "drift": ["drift", "--scenario", "doppler-fast", "--checkpoint", str(ckpt), "--frames", "2", "--quiet", "--out", str(out)],
        "demo": ["demo", "--checkpoint", str(ckpt), "--frames", "2", "--quiet", "--out", str(out)],
        "ber": ["ber", "--codec", "ae", "--channel", "awgn", "--checkpoint", str(ckpt), "--ebno-db", "0", "--quiet", "--out", str(out)],
        "export": ["export", "--checkpoint", str(ckpt), "--bits", "4", "--out", str(out) + ".onnx"],
        "pack compression": ["pack", "compression", "--base", str(ckpt), "--quiet", "--out", str(out)],
        "pack adversarial": ["pack", "adversarial", "--base", str(ckpt), "--quiet", "--out", str(out)],
        "pack label-noise": ["pack", "label-noise", "--base", str(ckpt), "--quiet", "--out", str(out)],
    }[cmd]


CLI_CASES = [("fewshot", "--checkpoint"), ("meta-train", "--resume"), ("drift", "--checkpoint"),
             ("drift", "--resume"), ("demo", "--checkpoint"), ("ber", "--checkpoint"), ("export", "--checkpoint"),
             ("pack compression", "--base"), ("pack adversarial", "--base"), ("pack label-noise", "--base")]
# flags that read no pickle: `ber/fewshot --resume` read OUT/results.json (strict JSON); `--base-steps` is a number
JSON_ONLY = {("ber", "--resume"), ("fewshot", "--resume"), ("pack label-noise", "--base-steps")}  # (and a step count)


def test_every_checkpoint_flag_is_covered():
    """Guard: a new flag that reads a checkpoint (e.g. ``train --resume``) must be added to CLI_CASES."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    found = set()
    commands = list(sub.choices.items())
    for cmd, p in commands:
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":  # nested: `metacomm pack NAME`
                commands += [(f"{cmd} {name}", sp) for name, sp in action.choices.items()]
            elif re.search(r"checkpoint|resume|ckpt|init|weights|base", action.dest) and action.type is not int \
                    and action.option_strings:
                found.add((cmd, action.option_strings[-1]))
    assert found - JSON_ONLY == set(CLI_CASES)


def _run_cli(argv: list[str]) -> int:
    try:
        return int(main(argv) or 0)
    except SystemExit as e:
        return int(e.code or 0)


@pytest.mark.parametrize("cmd,flag", CLI_CASES)
def test_cli_runs_no_code_from_a_crafted_checkpoint(cmd, flag, exploit, tmp_path, capsys):
    path, marker = exploit
    try:
        rc = _run_cli(_argv(cmd, flag, path, tmp_path / "out"))
        reached = rc == 2 and f"{flag}: " in capsys.readouterr().err  # refused by the checkpoint loader
    except pickle.UnpicklingError:  # how it fails is the next test's business; here: no code may run
        reached = True
    assert not marker.exists(), f"metacomm {cmd} {flag} executed code from the checkpoint"
    assert reached, "the command stopped before it opened the checkpoint: this test would test nothing"


@pytest.mark.parametrize("cmd,flag", CLI_CASES)
def test_cli_refuses_a_crafted_checkpoint_with_one_line(cmd, flag, exploit, tmp_path, capsys):
    path, marker = exploit
    rc = _run_cli(_argv(cmd, flag, path, tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"metacomm {cmd}: error: {flag}: "), err
    assert not marker.exists()


# --- library loaders ------------------------------------------------------------------------------------------

def _load_codec(path):
    from metacomm.codecs.checkpoint import load_codec
    return load_codec(path)


def _online_load_meta(path):
    from metacomm.scenarios.online_drift import load_meta
    return load_meta(path)


def _load_checkpoint(path):
    from metacomm.artefacts import KINDS, load_checkpoint
    return load_checkpoint(path, kinds=list(KINDS), field="--checkpoint")


def _trainer_load(path):
    from metacomm.adaptation import MetaConfig, MetaTrainer, SupervisedObjective

    def sampler(num_tasks, generator):
        x = torch.randn(num_tasks, 4, 2, generator=generator)
        return (x, x[..., :1]), (x, x[..., :1])

    trainer = MetaTrainer(torch.nn.Linear(2, 1), SupervisedObjective(), sampler, MetaConfig(meta_batch=2))
    return trainer.load(str(path))


LOADERS = {"load_codec": _load_codec, "online_drift.load_meta": _online_load_meta,
           "artefacts.load_checkpoint": _load_checkpoint, "MetaTrainer.load": _trainer_load}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_library_loaders_run_no_code(name, exploit):
    path, marker = exploit
    with pytest.raises((ConfigError, pickle.UnpicklingError)):  # which one is the next test's business
        LOADERS[name](path)
    assert not marker.exists(), f"{name} executed code from the checkpoint"


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_library_loaders_refuse_with_a_config_error(name, exploit):
    path, marker = exploit
    with pytest.raises(ConfigError) as e:
        LOADERS[name](path)
    assert "\n" not in str(e.value) and not marker.exists()


# --- strict JSON of every results file ------------------------------------------------------------------------

# A scenario whose plotted quantity (the IQ-imbalance epsilon) exists only in its second segment: the first
# segment's frames have no drift value (NaN inside the run), which a strict writer must store as null.
NAN_SCENARIO = """
name = "half-drift"
description = "two segments; only the second drifts the plotted impairment parameter"
ebno_db = 10.0
frame_duration_s = 1e-3
seed = 1
plot = "epsilon"

[codec]
k = 8
n = 8

[[segment]]
frames = 2
channel = "multipath"
[segment.channel_args]
num_taps = 3
mode = "truncate"

[[segment]]
frames = 2
channel = "multipath"
[segment.channel_args]
num_taps = 3
mode = "truncate"
[segment.impairment]
kind = "iq-imbalance"
position = "tx"
[segment.impairment.params]
epsilon = { ramp = [0.0, 0.15] }
delta_deg = { ramp = [0.0, 15.0] }
"""


def _results_of(command: str, d: Path) -> Path:
    out = d / command
    if command == "ber":
        argv = [["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0,20", "--max-blocks", "20",
                 "--target-block-errors", "5", "--quiet", "--out", str(out)]]
    elif command == "fewshot":
        argv = [["meta-train", "--scenario", "iq-demod", "--algo", "metasgd", "--meta-steps", "2", "--joint-steps",
                 "1", "--val-every", "0", "--val-tasks", "2", "--checkpoint-every", "0", "--quiet", "--out",
                 str(d / "m.pt")],
                ["fewshot", "--checkpoint", str(d / "m.pt"), "--pilots", "2", "--steps", "0,1", "--test-channels",
                 "2", "--test-blocks", "50", "--genie-steps", "2", "--out", str(out)]]
    elif command == "drift":
        (d / "half-drift.toml").write_text(NAN_SCENARIO)
        argv = [["drift", "--scenario", str(d / "half-drift.toml"), "--frames", "4", "--links", "1", "--payload", "4",
                 "--schemes", "meta,pilot-ls,genie", "--quiet", "--out", str(out)]]
    else:
        argv = [["demo", "--frames", "2", "--quiet", "--out", str(out)]]
    for a in argv:
        assert _run_cli(a) == 0, a
    return out / "results.json"


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    """``results_file(command)`` -> its results.json, each command run once per module."""
    cache: dict[str, Path] = {}

    def get(command: str) -> Path:
        if command not in cache:
            cache[command] = _results_of(command, tmp_path_factory.mktemp(command))
        return cache[command]

    return get


def _refuse(token):
    raise ValueError(f"non-standard JSON constant {token}")


@pytest.mark.parametrize("command", ["ber", "fewshot", "drift", "demo"])
def test_results_files_are_strict_json(command, results_file):
    doc = json.loads(results_file(command).read_text(), parse_constant=_refuse)
    assert isinstance(doc, dict) and doc


@pytest.mark.parametrize("command,kind", [("ber", "metacomm-results"), ("fewshot", "metacomm-fewshot"),
                                          ("drift", "metacomm-drift"), ("demo", "metacomm-drift")])
def test_results_files_carry_their_format_tag(command, kind, results_file):
    doc = json.loads(results_file(command).read_text())
    assert doc.get("format") == f"{kind}/1"


def test_a_drift_result_with_undefined_drift_values_is_the_strictness_probe(tmp_path):
    """The drift case above must really contain a non-finite value in the run; otherwise it tests nothing."""
    from metacomm.scenarios.drift_scenarios import parse_scenario

    sc = parse_scenario(NAN_SCENARIO)
    frames = list(sc.timeline.frames(4, batch_size=1, num_symbols=8, generator=torch.Generator().manual_seed(0)))
    values = [f.drift_value for f in frames]
    assert any(v != v for v in values) and any(v == v for v in values)  # NaN in segment 0, numbers in segment 1
