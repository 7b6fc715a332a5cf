"""metacomm.artefacts: format tags, strict atomic JSON, weights-only checkpoints, atomic figures.

References are independent of the code under test: hand-written expected documents, Python's own strict JSON
parser, ``torch.load(weights_only=True)`` itself (for what a checkpoint may hold), the files' magic bytes.
"""

import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from metacomm import ConfigError, __version__
from metacomm import artefacts as A

SHIPPED = Path(__file__).resolve().parents[1] / "metacomm" / "checkpoints" / "online_drift_k8n8.pt"


def _strict(text):
    def refuse(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def _files(d):
    return sorted(p.name for p in Path(d).iterdir())


# The least each kind's schema asks for (artefacts.register_kind(..., schema=...)): the tests below are about tags,
# so their payloads carry these entries and whatever the test is about.
TRAINER = {"config": {"algo": "maml"}, "adapt": [], "step": 1, "model": {}, "optimizer": {},
           "generator": torch.zeros(4, dtype=torch.uint8), "skipped": [], "history": []}
META = {**TRAINER, "scenario": "fading-ae", "scenario_config": {}}
DRIFT_DOC = ', "config": {}, "frames": []}'  # closes a drift results document


# --- registry and tags ----------------------------------------------------------------------------------------

def test_registry_holds_every_kind_at_version_1():
    want = {"metacomm-results", "metacomm-fewshot", "metacomm-drift", "metacomm-codec", "metacomm-meta",
            "metacomm-meta-trainer", "metacomm-online-meta"}
    assert want <= set(A.KINDS)
    for name in want:
        assert A.format_tag(name) == f"{name}/1"
        assert A.KINDS[name].reads == (1,)
    with pytest.raises(ValueError, match="unknown artefact kind"):
        A.format_tag("metacomm-nope")


def test_parse_tag():
    assert A.parse_tag("metacomm-meta/1") == ("metacomm-meta", 1)
    assert A.parse_tag("metacomm-drift/12") == ("metacomm-drift", 12)
    for bad in ("metacomm-meta", "metacomm-meta/x", "/1", "a/b/1", None, 3, "metacomm-meta/-1"):
        assert A.parse_tag(bad) is None


def test_tags_of_reads_every_legacy_spelling():
    assert A.tags_of({"format": "metacomm-codec", "format_version": 1}) == [("metacomm-codec", 1)]
    assert A.tags_of({"kind": "metacomm-online-meta/1"}) == [("metacomm-online-meta", 1)]
    # today's meta-train checkpoint: a trainer state ("format") extended with the meta-train tag ("kind")
    assert A.tags_of({"format": "metacomm-meta-trainer/1", "kind": "metacomm-meta/1"}) == \
        [("metacomm-meta", 1), ("metacomm-meta-trainer", 1)]
    assert A.tags_of({"config": {"format": "metacomm-results/1"}, "points": []}) == [("metacomm-results", 1)]
    assert A.tags_of({"format": "metacomm-meta/2", "embeds": ["metacomm-meta-trainer/1"]}) == \
        [("metacomm-meta", 2), ("metacomm-meta-trainer", 1)]
    assert A.tags_of({"weights": 1}) == [] and A.tags_of([1, 2]) == []


# --- JSON -----------------------------------------------------------------------------------------------------

def test_write_json_is_strict_and_converts_scalars(tmp_path):
    obj = {
        "a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": {"d": np.float64(0.25), "e": np.int64(7)},
        "t": torch.tensor(3.5), "ti": torch.tensor(4), "arr": np.array([1.0, np.nan]), "tt": torch.tensor([1, 2]),
        "tup": (1, "x"), "flag": np.bool_(True), "path": Path("x") / "y", 5: "int key", "none": None,
        "f32": np.float32(0.5), "big": 2**70,
    }
    p = A.write_json(tmp_path / "r.json", obj, kind="metacomm-drift")
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = _strict(text)
    assert got == {
        "format": "metacomm-drift/1", "a": None, "b": [1.5, None, None], "c": {"d": 0.25, "e": 7}, "t": 3.5,
        "ti": 4, "arr": [1.0, None], "tt": [1, 2], "tup": [1, "x"], "flag": True, "path": os.path.join("x", "y"),
        "5": "int key", "none": None, "f32": 0.5, "big": 2**70,
    }
    assert list(got)[0] == "format"  # the tag leads the file
    assert type(got["flag"]) is bool and type(got["c"]["e"]) is int
    assert _files(tmp_path) == ["r.json"]


def test_write_json_keeps_an_equal_tag_and_refuses_another(tmp_path):
    A.write_json(tmp_path / "a.json", {"format": "metacomm-fewshot/1", "x": 1}, kind="metacomm-fewshot")
    assert _strict((tmp_path / "a.json").read_text()) == {"format": "metacomm-fewshot/1", "x": 1}
    with pytest.raises(ConfigError, match="already carries format 'metacomm-drift/1'"):
        A.write_json(tmp_path / "b.json", {"format": "metacomm-drift/1"}, kind="metacomm-fewshot")
    assert not (tmp_path / "b.json").exists()


def test_write_json_failure_leaves_the_old_file(tmp_path):
    class Bad:
        def __str__(self):
            raise RuntimeError("boom")

    p = A.write_json(tmp_path / "r.json", {"x": 1}, kind="metacomm-fewshot")
    before = p.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        A.write_json(p, {"x": Bad()}, kind="metacomm-fewshot")
    assert p.read_bytes() == before and _files(tmp_path) == ["r.json"]


def test_write_json_creates_directories_and_refuses_a_directory_target(tmp_path):
    p = A.write_json(tmp_path / "a" / "b" / "r.json", {}, kind="metacomm-drift")
    assert _strict(p.read_text()) == {"format": "metacomm-drift/1"}
    with pytest.raises(ConfigError, match="is a directory") as e:
        A.write_json(tmp_path / "a", {}, kind="metacomm-drift", field="--out")
    assert e.value.field == "--out"


def test_read_json_checks_strictness_kind_and_version(tmp_path):
    f = tmp_path / "r.json"
    f.write_text('{"format": "metacomm-drift/1", "x": NaN}')
    with pytest.raises(ConfigError, match="not valid JSON.*NaN") as e:
        A.read_json(f, kind="metacomm-drift", field="--results")
    assert e.value.field == "--results"
    f.write_text('{"format": "metacomm-drift/1", "x": Infinity}')
    with pytest.raises(ConfigError, match="Infinity"):
        A.read_json(f, kind="metacomm-drift", field="--results")
    f.write_text('{"format": "metacomm-drift/1", "x": null' + DRIFT_DOC)
    assert A.read_json(f, kind="metacomm-drift", field="--results") == {"format": "metacomm-drift/1", "x": None,
                                                                        "config": {}, "frames": []}
    assert A.read_json(f, kind=("metacomm-fewshot", "metacomm-drift"), field="f")["x"] is None
    with pytest.raises(ConfigError, match=r"is a metacomm drift results file \(metacomm-drift/1\), not a "
                                          r"metacomm few-shot results file; expected the output of `metacomm fewshot`"):
        A.read_json(f, kind="metacomm-fewshot", field="--results")
    f.write_text('{"format": "metacomm-drift/2"}')
    with pytest.raises(ConfigError, match=r"metacomm-drift/2\) written by a newer metacomm; this metacomm reads "
                                          r"metacomm-drift/1"):
        A.read_json(f, kind="metacomm-drift", field="--results")
    f.write_text('{"format": "metacomm-frobnicate/1"}')
    with pytest.raises(ConfigError, match="a kind this metacomm does not know"):
        A.read_json(f, kind="metacomm-drift", field="--results")
    f.write_text('{"x": 1}')
    with pytest.raises(ConfigError, match="is not a metacomm drift results file \\(no metacomm format tag\\)"):
        A.read_json(f, kind="metacomm-drift", field="--results")
    assert A.read_json(f, kind="metacomm-drift", field="--results", allow_untagged=True) == {"x": 1}
    f.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object was expected"):
        A.read_json(f, kind="metacomm-drift", field="--results")
    f.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        A.read_json(f, kind="metacomm-drift", field="--results")
    with pytest.raises(ConfigError, match="no such file"):
        A.read_json(tmp_path / "missing.json", kind="metacomm-drift", field="--results")


def test_read_json_accepts_the_legacy_results_tag(tmp_path):
    f = tmp_path / "results.json"
    f.write_text('{"config": {"format": "metacomm-results/1"}, "points": []}')
    assert A.read_json(f, kind="metacomm-results", field="results")["points"] == []


def test_read_json_old_version_is_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(A.KINDS, "metacomm-drift", A.ArtefactKind("metacomm-drift", 3, "metacomm drift results "
                                                                  "file", "`metacomm drift`", (2, 3)))
    f = tmp_path / "r.json"
    f.write_text('{"format": "metacomm-drift/1"}')
    with pytest.raises(ConfigError, match="old version this metacomm no longer reads \\(it reads metacomm-drift/2, "
                                          "metacomm-drift/3\\)"):
        A.read_json(f, kind="metacomm-drift", field="x")
    f.write_text('{"format": "metacomm-drift/2"' + DRIFT_DOC)
    assert A.read_json(f, kind="metacomm-drift", field="x")["format"] == "metacomm-drift/2"


def test_write_text_is_atomic(tmp_path):
    p = A.write_text(tmp_path / "d" / "t.csv", "a,b\n1,2\n")
    assert p.read_text() == "a,b\n1,2\n" and _files(tmp_path / "d") == ["t.csv"]


# --- checkpoints ----------------------------------------------------------------------------------------------

ALLOWED = {
    "tensor": torch.arange(3.0), "param": torch.nn.Parameter(torch.ones(2)), "int": 3, "float": 0.5,
    "nan": float("nan"), "bool": True, "none": None, "str": "x", "bytes": b"ab", "complex": 1 + 2j,
    "list": [1, torch.zeros(1)], "tuple": (1, 2.0), "set": {1, 2}, "od": OrderedDict(a=torch.ones(1)),
    "intkeys": {1: "a", (2, "b"): 3}, "size": torch.Size([2, 3]), "dtype": torch.float64,
    "device": torch.device("cpu"), "generator": torch.Generator().manual_seed(3).get_state(),
    "optimizer": torch.optim.Adam([torch.nn.Parameter(torch.ones(2))]).state_dict(),
}


class _Obj:
    pass


REFUSED = {"numpy_float": np.float64(1.0), "numpy_int": np.int64(2), "numpy_array": np.zeros(2), "object": _Obj(),
           "nested_object": {"a": [1, {"b": _Obj()}]}, "path": Path("x"), "function": len}


def _torch_round_trip_ok(value, tmp_path) -> bool:
    p = tmp_path / "probe.pt"
    torch.save({"v": value}, p)
    try:
        torch.load(p, weights_only=True)
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_check_weights_only_allows_what_torch_reads_back(name, tmp_path):
    assert _torch_round_trip_ok(ALLOWED[name], tmp_path)  # the reference: torch itself
    A.check_weights_only({"v": ALLOWED[name]})


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_check_weights_only_refuses_what_torch_would_not_read(name, tmp_path):
    if name not in ("object", "nested_object", "function"):  # torch cannot pickle a local class at all
        assert not _torch_round_trip_ok(REFUSED[name], tmp_path)
    with pytest.raises(ConfigError, match="weights_only=True"):
        A.check_weights_only({"v": REFUSED[name]})


def test_check_weights_only_names_the_entry():
    with pytest.raises(ConfigError) as e:
        A.check_weights_only({"meta": {"channel": [0, np.float32(1)]}})
    assert e.value.field == "payload['meta']['channel'][1]"
    assert "numpy" in str(e.value) and ".item()" in str(e.value)


def test_checkpoint_round_trip(tmp_path):
    payload = {**META, "model": {"w": torch.randn(3, 2, generator=torch.Generator().manual_seed(1))}, "step": 7,
               "history": [{"loss": 0.5}], "lrs": None}
    p = A.save_checkpoint(tmp_path / "m.pt", payload, kind="metacomm-meta")
    raw = torch.load(p, weights_only=True)  # independent reader
    assert raw["format"] == "metacomm-meta/1" and raw["metacomm_version"] == __version__
    assert "embeds" not in raw and "format" not in payload  # the caller's dict is not modified
    got = A.load_checkpoint(p, kinds="metacomm-meta", field="--checkpoint")
    assert torch.equal(got["model"]["w"], payload["model"]["w"])
    assert got["step"] == 7 and got["history"] == [{"loss": 0.5}] and got["lrs"] is None
    assert _files(tmp_path) == ["m.pt"]


def test_checkpoint_embeds_the_inner_tag(tmp_path):
    state = {**TRAINER, "format": "metacomm-meta-trainer/1", "step": 3, "model": {}, "scenario_config": {}}
    p = A.save_checkpoint(tmp_path / "m.pt", {**state, "scenario": "fading-ae"}, kind="metacomm-meta")
    raw = torch.load(p, weights_only=True)
    assert raw["format"] == "metacomm-meta/1" and raw["embeds"] == ["metacomm-meta-trainer/1"]
    for kinds in ("metacomm-meta", "metacomm-meta-trainer", ("metacomm-codec", "metacomm-meta")):
        assert A.load_checkpoint(p, kinds=kinds, field="--resume")["step"] == 3
    assert A.check_kind(raw, "metacomm-meta-trainer", field="f") == ("metacomm-meta-trainer", 1)
    with pytest.raises(ConfigError, match="not a metacomm codec checkpoint"):
        A.load_checkpoint(p, kinds="metacomm-codec", field="--checkpoint")


def test_save_checkpoint_refuses_bad_payload_and_keeps_the_old_file(tmp_path):
    p = A.save_checkpoint(tmp_path / "m.pt", {"x": torch.ones(1)}, kind="metacomm-meta")
    before = p.read_bytes()
    with pytest.raises(ConfigError, match=r"payload\['meta'\]"):
        A.save_checkpoint(p, {"meta": np.float64(1.0)}, kind="metacomm-meta")
    with pytest.raises(ConfigError, match="finished"):
        A.save_checkpoint(p, {"finished": 0}, kind="metacomm-meta")
    assert p.read_bytes() == before and _files(tmp_path) == ["m.pt"]


def test_legacy_checkpoints_load(tmp_path):
    legacy = {
        "metacomm-meta": {**META, "format": "metacomm-meta-trainer/1", "kind": "metacomm-meta/1", "step": 1},
        "metacomm-meta-trainer": {**TRAINER, "format": "metacomm-meta-trainer/1", "step": 1},
        "metacomm-online-meta": {"kind": "metacomm-online-meta/1", "step": 1, "config": {}, "model": {}},
        "metacomm-codec": {"format": "metacomm-codec", "format_version": 1, "step": 1, "codec_class": "Autoencoder",
                           "config": {}, "state_dict": {}},
    }
    for kind, payload in legacy.items():
        torch.save(payload, tmp_path / "old.pt")
        assert A.load_checkpoint(tmp_path / "old.pt", kinds=kind, field="--checkpoint")["step"] == 1
    torch.save(legacy["metacomm-meta"], tmp_path / "old.pt")  # a meta-train file resumes a trainer too
    assert A.load_checkpoint(tmp_path / "old.pt", kinds="metacomm-meta-trainer", field="--resume")["step"] == 1
    torch.save({"format": "metacomm-codec", "format_version": 2}, tmp_path / "new.pt")
    with pytest.raises(ConfigError, match="written by a newer metacomm"):
        A.load_checkpoint(tmp_path / "new.pt", kinds="metacomm-codec", field="--checkpoint")


def test_the_shipped_checkpoint_loads():
    ck = A.load_checkpoint(SHIPPED, kinds="metacomm-online-meta", field="--checkpoint")
    assert ck["kind"] == "metacomm-online-meta/1" and isinstance(ck["model"], dict)
    with pytest.raises(ConfigError, match=r"is a metacomm online-drift meta checkpoint \(metacomm-online-meta/1\), "
                                          r"not a metacomm meta-train checkpoint") as e:
        A.load_checkpoint(SHIPPED, kinds="metacomm-meta", field="--checkpoint")
    assert e.value.field == "--checkpoint"


def test_partial_checkpoints_need_allow_partial(tmp_path):
    p = A.save_checkpoint(tmp_path / "m.pt", {**META, "finished": False, "step": 40}, kind="metacomm-meta")
    with pytest.raises(ConfigError, match=r"periodic checkpoint of an unfinished run \(step 40\); pass "
                                          r"--allow-partial") as e:
        A.load_checkpoint(p, kinds="metacomm-meta", field="--checkpoint")
    assert e.value.field == "--checkpoint"
    assert A.load_checkpoint(p, kinds="metacomm-meta", field="--checkpoint", allow_partial=True)["step"] == 40
    q = A.save_checkpoint(tmp_path / "f.pt", {**META, "finished": True}, kind="metacomm-meta")
    assert A.load_checkpoint(q, kinds="metacomm-meta", field="--checkpoint")["finished"] is True


def test_load_checkpoint_failures_are_one_line_config_errors(tmp_path):
    good = A.save_checkpoint(tmp_path / "good.pt", {"w": torch.zeros(100)}, kind="metacomm-meta")
    data = good.read_bytes()
    cases = {
        "trunc.pt": (data[: len(data) // 2], "truncated or corrupt"),
        "empty.pt": (b"", "truncated or corrupt"),
        "text.pt": (b"hello, not a checkpoint\n", "truncated or corrupt"),
    }
    for name, (content, msg) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match=msg) as e:
            A.load_checkpoint(tmp_path / name, kinds="metacomm-meta", field="--resume")
        assert e.value.field == "--resume" and "\n" not in str(e.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ConfigError, match="not a metacomm meta-train checkpoint \\(it holds a Tensor"):
        A.load_checkpoint(tmp_path / "tensor.pt", kinds="metacomm-meta", field="--checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a metacomm meta-train checkpoint \\(no metacomm format tag\\); "
                                          "expected the output of `metacomm meta-train`"):
        A.load_checkpoint(tmp_path / "other.pt", kinds="metacomm-meta", field="--checkpoint")
    with pytest.raises(ConfigError, match="no such file"):
        A.load_checkpoint(tmp_path / "missing.pt", kinds="metacomm-meta", field="--checkpoint")
    with pytest.raises(ConfigError, match="is a directory"):
        A.load_checkpoint(tmp_path, kinds="metacomm-meta", field="--checkpoint")


def test_load_checkpoint_maps_to_the_device(tmp_path, device):
    p = A.save_checkpoint(tmp_path / "m.pt", {**META, "model": {"w": torch.ones(2)}}, kind="metacomm-meta")
    got = A.load_checkpoint(p, kinds="metacomm-meta", field="--checkpoint", device=device)
    assert got["model"]["w"].device.type == torch.device(device).type


# --- figures --------------------------------------------------------------------------------------------------

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}


@pytest.mark.parametrize("ext", sorted(MAGIC))
def test_save_figure(ext, tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, math.e])
    p = A.save_figure(fig, tmp_path / "sub" / f"f.{ext}", dpi=50)
    data = p.read_bytes()
    assert data.startswith(MAGIC[ext]) and f"metacomm {__version__}".encode() in data
    assert fig.number not in plt.get_fignums()  # closed
    assert _files(tmp_path / "sub") == [f"f.{ext}"]


def test_save_figure_refuses_unknown_suffix_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    with pytest.raises(ConfigError, match=r"must end in \.png, \.pdf, \.svg") as e:
        A.save_figure(fig, tmp_path / "f.jpg", field="--plot")
    assert e.value.field == "--plot" and fig.number not in plt.get_fignums()
    assert _files(tmp_path) == []


def test_figures_with_undecodable_text_are_written(tmp_path):
    """Titles/labels carrying undecodable command-line bytes (surrogate escapes) or lone surrogates reach the
    figure as U+FFFD instead of crashing matplotlib's font layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import printable, save_figure
    assert printable("r\udcff") == "r\ufffd" and printable("ok") == "ok" and printable("\ud800") == "?"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="\udcfe\ud800")
    ax.set_title("bad\udcff")
    ax.legend()
    fig.suptitle("x\udcff")
    p = save_figure(fig, tmp_path / "f.png")
    assert p.read_bytes()[:4] == b"\x89PNG"


def test_a_killed_writers_leftover_temp_file_is_removed_by_the_next_write(tmp_path):
    """A temporary file older than STALE_TMP_S (what a SIGKILL between write and rename leaves) is removed by the
    next successful write of the same destination; a young one (a concurrent writer) and other files are kept."""
    import os
    import time

    from metacomm import _io
    dest = tmp_path / "results.json"
    old = tmp_path / ".results.json.abc123.tmp"
    young = tmp_path / ".results.json.def456.tmp"
    other = tmp_path / ".other.json.abc123.tmp"
    for f in (old, young, other):
        f.write_text("{")
    past = time.time() - _io.STALE_TMP_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    _io.atomic_write_text(dest, "{}")
    assert dest.read_text() == "{}"
    assert not old.exists() and young.exists() and other.exists()
