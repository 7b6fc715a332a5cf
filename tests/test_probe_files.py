"""Defects found by a hostile-user probe of the files metacomm writes and reads.

* ``metacomm export`` writes through the one atomic writer (``mkstemp`` in the destination's directory): a link
  planted at the old fixed temporary name ``<out>.tmp`` or at ``--out`` itself is never followed, a full disk is one
  line naming ``--out`` and leaves no temporary, two writes never share a temporary;
* a foreign file is not replaced without ``--overwrite`` (``export --out notes.txt``; ``metacomm run``'s
  ``experiment.json`` / ``<stem>.experiment.json``), and ``run --overwrite`` reaches the command it runs;
* experiment files: a wrong-typed required key, ``out = ""`` and booleans given as numbers are one line, exit 2,
  naming the key; a UTF-8 byte-order mark is accepted;
* ``export`` does not print torch.onnx's "torchvision is not installed" notices.

The export tests replace the ONNX serialisation by fixed bytes, so that the write path is tested without the
optional ``[onnx]`` extra; the real export runs only where ``onnx`` and ``onnxscript`` are importable.
"""

from __future__ import annotations

import errno
import json
import logging
import os

import pytest
import torch

from metacomm import ConfigError
from metacomm.cli.main import main
from metacomm.experiments import export as export_mod
from metacomm.experiments.files import load_experiment

#: what the patched exporter "serialises": the start of a ModelProto (ir_version) and metacomm's tag entry
#: (metadata_props {key: "metacomm_format", value: "metacomm-onnx/1"} as protobuf bytes)
FAKE_ONNX = b"\x08\x08" + b"\x0a\x0fmetacomm_format\x12\x0fmetacomm-onnx/1" + b"\x00" * 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.set_num_threads(1)
    ck = tmp_path_factory.mktemp("probe") / "fading.pt"
    assert main(["meta-train", "--scenario", "fading-ae", "--meta-steps", "2", "--joint-steps", "0", "--val-every",
                 "0", "--quiet", "--set", "num_train_channels=4", "--out", str(ck)]) == 0
    return ck


@pytest.fixture
def fake_onnx(monkeypatch):
    """The exporter's serialisation replaced by :data:`FAKE_ONNX` (no onnx/onnxscript needed)."""
    monkeypatch.setattr(export_mod, "_export_onnx_bytes", lambda module, n: FAKE_ONNX)


def _export(ckpt, out, *extra):
    return main(["export", "--checkpoint", str(ckpt), "--out", str(out), *extra])


def _one_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix), err
    return err[0]


def _temporaries(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- export: atomic writes ---------------------------------------------------------------------------------------

def test_export_never_writes_through_a_link_planted_at_the_old_temporary_name(ckpt, tmp_path, fake_onnx, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    out_dir = tmp_path / "OUT"
    out_dir.mkdir()
    out = out_dir / "c.onnx"
    planted = out_dir / "c.onnx.tmp"
    planted.symlink_to(victim)
    assert _export(ckpt, out) == 0
    capsys.readouterr()
    assert victim.read_text() == "precious"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)  # left alone, never written through
    assert out.read_bytes() == FAKE_ONNX and not out.is_symlink()
    assert [p.name for p in out_dir.iterdir() if p.name != "c.onnx.tmp" and p.name != "c.onnx"] == []


def test_export_replaces_a_link_at_the_destination_only_with_overwrite_and_never_follows_it(ckpt, tmp_path,
                                                                                           fake_onnx, capsys):
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(FAKE_ONNX[:-1] + b"\x01")  # even one of ours: the link is what --out names
    out = tmp_path / "OUT" / "c.onnx"
    out.parent.mkdir()
    out.symlink_to(victim)
    assert _export(ckpt, out) == 2
    line = _one_line(capsys, "metacomm export: error: --out: ")
    assert "link" in line and "--overwrite" in line
    assert out.is_symlink() and victim.read_bytes() == FAKE_ONNX[:-1] + b"\x01"
    assert _export(ckpt, out, "--overwrite") == 0
    capsys.readouterr()
    assert not out.is_symlink() and out.read_bytes() == FAKE_ONNX
    assert victim.read_bytes() == FAKE_ONNX[:-1] + b"\x01"


def _no_space(real_write):
    def write(fd, data):
        if fd > 2:  # the writer's temporary file; the terminal's descriptors are left alone
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)
    return write


def test_export_on_a_full_disk_is_one_line_and_leaves_no_temporary(ckpt, tmp_path, fake_onnx, capsys,
                                                                   monkeypatch):
    out = tmp_path / "c.onnx"
    assert _export(ckpt, out) == 0  # a previous export of ours, which a failed one must leave as it was
    capsys.readouterr()
    previous = out.read_bytes()
    monkeypatch.setattr(os, "write", _no_space(os.write))
    assert _export(ckpt, out) == 2
    line = _one_line(capsys, "metacomm export: error: --out: ")
    assert "No space left on device" in line and "Traceback" not in line
    assert out.read_bytes() == previous
    assert _temporaries(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["c.onnx"]


def test_the_atomic_writer_turns_a_full_disk_into_a_config_error_naming_the_field(tmp_path, monkeypatch):
    from metacomm._io import atomic_write_bytes, atomic_write_text
    target = tmp_path / "f.bin"
    monkeypatch.setattr(os, "write", _no_space(os.write))
    with pytest.raises(ConfigError) as e:
        atomic_write_bytes(target, b"data", field="out")
    assert e.value.field == "out" and "No space left on device" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(OSError) as e2:  # without a field: the OSError itself, as before
        atomic_write_text(target, "data")
    assert e2.value.errno == errno.ENOSPC and not isinstance(e2.value, ConfigError)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="^out: cannot write"):  # a missing directory, too
        atomic_write_bytes(tmp_path / "missing" / "f.bin", b"x", field="out")


def test_two_writes_of_one_destination_use_distinct_temporaries_in_its_directory(tmp_path, monkeypatch):
    from metacomm import _io
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "c.onnx"
    _io.atomic_write_bytes(target, b"one")
    _io.atomic_write_bytes(target, b"two")
    assert len(set(seen)) == 2 and all(os.path.dirname(s) == str(tmp_path) for s in seen)
    assert str(target) + ".tmp" not in seen and target.read_bytes() == b"two"


# --- export: foreign files ---------------------------------------------------------------------------------------

def test_export_refuses_to_replace_a_foreign_file_unless_overwrite(ckpt, tmp_path, fake_onnx, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert _export(ckpt, notes) == 2
    line = _one_line(capsys, "metacomm export: error: --out: ")
    assert "not an ONNX model exported by metacomm" in line and "--overwrite" in line
    assert notes.read_text() == "my notes"
    untagged = tmp_path / "other.onnx"
    untagged.write_bytes(b"\x08\x08" + b"\x00" * 64)  # an ONNX-looking file from another tool
    assert _export(ckpt, untagged) == 2
    _one_line(capsys, "metacomm export: error: --out: ")
    assert _export(ckpt, notes, "--overwrite") == 0
    assert notes.read_bytes() == FAKE_ONNX
    assert _export(ckpt, notes) == 0  # now a model of ours: replaced without --overwrite
    capsys.readouterr()
    assert export_mod.is_metacomm_onnx(notes) and not export_mod.is_metacomm_onnx(untagged)


# --- export: the torchvision notices ------------------------------------------------------------------------------

def test_the_torchvision_notice_is_filtered_around_the_export_and_nothing_else():
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        with export_mod._without_torchvision_notices():
            logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            logger.warning("a real problem")
        logger.warning("torchvision is not installed. Skipping %s", "torchvision::roi_align")  # filter removed
    finally:
        logger.removeHandler(handler)
    assert records == ["a real problem", "torchvision is not installed. Skipping torchvision::roi_align"]


def test_real_onnx_export_is_tagged_and_prints_one_line(ckpt, tmp_path, capfd):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import onnx
    out = tmp_path / "c.onnx"
    assert _export(ckpt, out) == 0
    printed = capfd.readouterr()  # file descriptors too: torch's log handlers write to the real stderr
    assert "torchvision" not in printed.out + printed.err, printed.err
    assert printed.out.strip().startswith("export: decoder") and len(printed.out.strip().splitlines()) == 1
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["metacomm_format"] == export_mod.ONNX_TAG and export_mod.is_metacomm_onnx(out)
    assert _temporaries(tmp_path) == []
    assert _export(ckpt, out) == 0  # ours: replaced without --overwrite


# --- metacomm run: experiment records ------------------------------------------------------------------------------

BER = 'command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0"\nmax_blocks = 200\nprogress = false\n'
TRAIN = ('command = "train"\ncodec = "ae"\ntrain_ebno_db = 5\nsteps = 2\nbatch_size = 10\nprogress = false\n'
         'out = "model.pt"\n')


def _toml(tmp_path, text: str, name: str = "e.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_run_refuses_to_replace_a_foreign_experiment_json_unless_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = _toml(tmp_path, BER + 'out = "r"\n')
    (tmp_path / "r").mkdir()
    foreign = tmp_path / "r" / "experiment.json"
    foreign.write_text('{"mine": 1}\n')
    assert main(["run", str(f)]) == 2
    line = _one_line(capsys, "metacomm run: error: --out: ")
    assert "experiment.json" in line and "--overwrite" in line
    assert foreign.read_text() == '{"mine": 1}\n' and not (tmp_path / "r" / "results.json").exists()  # before work
    assert main(["run", str(f), "--overwrite"]) == 0
    assert json.loads(foreign.read_text())["format"] == "metacomm-experiment/1"
    assert main(["run", str(f)]) == 0  # a record of ours is replaced without --overwrite
    capsys.readouterr()


def test_run_refuses_a_foreign_stem_record_and_passes_overwrite_to_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    f = _toml(tmp_path, TRAIN)
    foreign = tmp_path / "model.experiment.json"
    foreign.write_text("not json at all")
    assert main(["run", str(f)]) == 2
    line = _one_line(capsys, "metacomm run: error: --out: ")
    assert "model.experiment.json" in line
    assert foreign.read_text() == "not json at all" and not (tmp_path / "model.pt").exists()
    assert main(["run", str(f), "--overwrite"]) == 0
    assert json.loads(foreign.read_text())["command"] == "train"
    capsys.readouterr()
    assert main(["run", str(f)]) == 2  # train itself refuses its existing outputs without overwrite ...
    _one_line(capsys, "metacomm run: error: --out: ")
    assert main(["run", str(f), "--overwrite"]) == 0  # ... and --overwrite reaches it
    capsys.readouterr()


def test_run_refuses_a_link_at_the_record_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "experiment.json").symlink_to(victim)
    f = _toml(tmp_path, BER + 'out = "r"\n')
    assert main(["run", str(f)]) == 2
    assert "link" in _one_line(capsys, "metacomm run: error: --out: ")
    assert victim.read_text() == "{}"


# --- experiment files: edge cases ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,key", [
    ('command = "ber"\ncodec = 5\nchannel = "awgn"\nebno_db = "0"\nout = "r"\n', "codec"),
    ('command = "ber"\ncodec = "qpsk"\nchannel = ["awgn"]\nebno_db = "0"\nout = "r"\n', "channel"),
    ('command = "train"\ncodec = "ae"\ntrain_ebno_db = 5\nout = 7\n', "--out"),
    ('command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0"\nout = ""\n', "--out"),
    ('command = "train"\ncodec = "ae"\ntrain_ebno_db = 5\nout = "  "\n', "--out"),
    ('command = "pack label-noise"\nbase = "scratch"\n', "--out"),  # its default out is ""
    ('command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = true\nout = "r"\n', "ebno_db"),
    ('command = "pack label-noise"\nbase = "scratch"\nebno_db = true\nout = "r"\n', "ebno_db"),  # was 1 dB
    ('command = "pack compression"\nbase = "b.pt"\nebno_db = true\nout = "r"\n', "ebno_db"),  # was a TypeError
    ('command = "train"\ncodec = "ae"\ntrain_ebno_db = true\nout = "m.pt"\n', "train_ebno_db"),
    ('command = "train"\ncodec = "ae"\ntrain_ebno_db = 5\nsteps = true\nout = "m.pt"\n', "steps"),
    ('command = "pack label-noise"\nbase = "scratch"\nrate = [true]\nout = "r"\n', "rate"),
    ('command = "pack compression"\nbase = "b.pt"\nbits = [4, [false]]\nout = "r"\n', "bits"),
], ids=["required-wrong-type", "required-list-for-str", "out-int", "out-empty", "out-blank", "out-default-empty",
        "ebno-bool", "label-noise-ebno-bool", "compression-ebno-bool", "train-ebno-bool", "steps-bool",
        "rate-list-bool", "nested-list-bool"])
def test_bad_experiment_values_are_one_line_naming_the_key(tmp_path, capsys, monkeypatch, text, key):
    monkeypatch.chdir(tmp_path)
    f = _toml(tmp_path, text)
    assert main(["run", str(f)]) == 2
    line = _one_line(capsys, f"metacomm run: error: {key}: ")
    assert "Traceback" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.toml"]  # nothing ran, nothing was written


def test_booleans_still_fit_true_false_settings_and_tables(tmp_path):
    f = _toml(tmp_path, BER + 'out = "r"\nresume = false\n')
    assert load_experiment(str(f))[1].progress is False
    g = _toml(tmp_path, 'command = "meta-train"\nscenario = "fading-ae"\nout = "m.pt"\n'
                        '[scenario_config]\nnum_train_channels = 4\n', "g.toml")
    command, cfg = load_experiment(str(g))
    assert command == "meta-train" and cfg.scenario_config["num_train_channels"] == 4


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    f = tmp_path / "bom.toml"
    f.write_bytes(b"\xef\xbb\xbf" + (BER + 'out = "r"\n').encode())
    command, cfg = load_experiment(str(f))
    assert command == "ber" and cfg.codec == "qpsk" and cfg.out == "r"
