"""Checkpoint round trips and every failure mode (ConfigError on the ``checkpoint`` key, nothing overwritten)."""

import pytest
import torch

from metacomm import ConfigError, __version__
from metacomm.channels import AWGN, make_generator
from metacomm.codecs.autoencoder import Autoencoder
from metacomm.codecs.base import CodecLink
from metacomm.codecs.checkpoint import load_codec, save_codec
from metacomm.codecs.constellation import TrainableConstellation

META = {"channel": "awgn", "channel_kwargs": {}, "train_ebno_db": 7.0}


def _ae():
    ae = Autoencoder(4, 7)
    ae.reset_parameters(make_generator(3))
    return ae


def test_round_trip_identical_simulation(tmp_path):
    ae = _ae()
    path = save_codec(tmp_path / "ae.pt", ae, META)
    loaded, meta = load_codec(path, expect={"class": "Autoencoder", "k": 4, "n": 7})
    assert type(loaded) is Autoencoder and not loaded.training
    assert meta["train_ebno_db"] == 7.0 and meta["channel"] == "awgn"
    assert meta["metacomm_version"] == __version__ and meta["codec_class"] == "Autoencoder"
    assert meta["config"]["k"] == 4
    for (k1, v1), (k2, v2) in zip(ae.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    outs = []
    for codec in (ae, loaded):
        link = CodecLink(codec, AWGN())
        outs.append(link(1000, 4.0, make_generator(9)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_round_trip_constellation(tmp_path):
    tc = TrainableConstellation(4, 8, demapper="app")
    with torch.no_grad():
        tc.encoder.points_r.add_(0.1)
        tc.encoder.points_i.mul_(1.3)
    path = save_codec(tmp_path / "tc.pt", tc, META)
    loaded, _ = load_codec(path, expect="TrainableConstellation")
    torch.testing.assert_close(loaded.points(), tc.points())


def test_missing_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such file") as e:
        load_codec(tmp_path / "nope.pt")
    assert e.value.field == "checkpoint"
    with pytest.raises(ConfigError, match="directory"):
        load_codec(tmp_path)


def test_truncated_and_garbage(tmp_path):
    path = save_codec(tmp_path / "ae.pt", _ae(), META)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated or corrupt|not a readable") as e:
        load_codec(tmp_path / "trunc.pt")
    assert e.value.field == "checkpoint"
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n")
    with pytest.raises(ConfigError, match="^checkpoint: "):
        load_codec(tmp_path / "text.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="^checkpoint: "):
        load_codec(tmp_path / "empty.pt")


def test_not_a_metacomm_file(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a metacomm codec checkpoint"):
        load_codec(tmp_path / "other.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ConfigError, match="not a metacomm codec checkpoint"):
        load_codec(tmp_path / "tensor.pt")


def test_other_codec_or_shape(tmp_path):
    path = save_codec(tmp_path / "ae.pt", _ae(), META)
    with pytest.raises(ConfigError, match="holds a Autoencoder codec.*expected a TrainableConstellation"):
        load_codec(path, expect="TrainableConstellation")
    with pytest.raises(ConfigError, match=r"different shape: n=7 \(expected 8\)"):
        load_codec(path, expect={"k": 4, "n": 8})


def test_weights_of_other_shape_rejected(tmp_path):
    path = save_codec(tmp_path / "ae.pt", _ae(), META)
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden"] = 32  # config no longer fits the stored weights
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="weights do not fit"):
        load_codec(tmp_path / "bad.pt")
    payload["config"] = {"k": 0, "n": 7}
    torch.save(payload, tmp_path / "bad2.pt")
    with pytest.raises(ConfigError, match="stored configuration is invalid"):
        load_codec(tmp_path / "bad2.pt")


def test_failed_save_leaves_existing_file(tmp_path):
    path = save_codec(tmp_path / "ae.pt", _ae(), META)
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        save_codec(path, Autoencoder(2, 2), {"channel": object()})  # not plain metadata
    assert path.read_bytes() == before
    with pytest.raises(ConfigError):
        save_codec(path, torch.nn.Linear(2, 2), META)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.pt"]  # no temporary files left


def test_small_file(tmp_path):
    path = save_codec(tmp_path / "ae.pt", _ae(), META)
    assert path.stat().st_size < 200_000


def test_file_carries_the_versioned_tag_and_legacy_files_load(tmp_path):
    ae = _ae()
    path = save_codec(tmp_path / "ae.pt", ae, META)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "metacomm-codec/1" and raw["format_version"] == 1
    # a file written before the tag carried its version
    raw["format"] = "metacomm-codec"
    torch.save(raw, tmp_path / "old.pt")
    loaded, _ = load_codec(tmp_path / "old.pt", expect="Autoencoder")
    for v1, v2 in zip(ae.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(v1, v2)
    raw["format_version"] = 2
    torch.save(raw, tmp_path / "newer.pt")
    with pytest.raises(ConfigError, match="written by a newer metacomm") as e:
        load_codec(tmp_path / "newer.pt")
    assert e.value.field == "checkpoint"


def test_other_metacomm_checkpoint_is_named(tmp_path):
    torch.save({"kind": "metacomm-online-meta/1", "model": {}}, tmp_path / "drift.pt")
    with pytest.raises(ConfigError, match=r"is a metacomm online-drift meta checkpoint \(metacomm-online-meta/1\), "
                                          r"not a metacomm codec checkpoint") as e:
        load_codec(tmp_path / "drift.pt")
    assert e.value.field == "checkpoint"


def test_numpy_metadata_becomes_plain_numbers(tmp_path):
    import numpy as np

    meta = {**META, "train_ebno_db": np.float64(7.5), "val_bler": np.float32(0.25), "steps": np.int64(3),
            "ok": np.bool_(True)}
    path = save_codec(tmp_path / "ae.pt", _ae(), meta)
    raw = torch.load(path, weights_only=True)  # loadable without allowing numpy globals
    got = raw["meta"]
    assert got["train_ebno_db"] == 7.5 and type(got["train_ebno_db"]) is float
    assert got["val_bler"] == 0.25 and type(got["val_bler"]) is float
    assert got["steps"] == 3 and type(got["steps"]) is int and got["ok"] is True
