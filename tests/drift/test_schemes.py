"""Drift schemes as objects: the registry, a new receiver as one class, the per-frame step, independent
references for pilot-LS and the genie yardsticks, the validated config, strict JSON of results.json."""

import json
import math
import textwrap

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.drift import registry
from metacomm.drift.protocol import Decision, DriftScheme
from metacomm.drift.registry import default_schemes, register_scheme, scheme_names
from metacomm.drift.result import FORMAT, DriftResult
from metacomm.drift.run import DriftRun, DriftRunConfig, run_drift
from metacomm.drift.schemes.reference import GenieScheme
from metacomm.scenarios.drift_scenarios import load_scenario, parse_scenario
from metacomm.scenarios.online_drift import DriftAutoencoder

torch.set_num_threads(1)
SMALL = dict(frames=3, pilots=8, links=2, payload=16, seed=5)


def _model():
    m = DriftAutoencoder(k=8, n=8, num_taps=3, hidden=16)
    m.reset_parameters(torch.Generator().manual_seed(0))
    return m


def _record(store):
    def hook(frame, sig):
        store.append(({k: v.clone() for k, v in frame.state.items()}, frame.no.clone(),
                      {k: v.clone() for k, v in sig.items()}))
    return hook


def _raise(token):
    raise ValueError(f"non-strict JSON token {token}")


BUILTINS = ("static", "retrain", "meta", "warm", "online-meta", "on-detection", "reset-on-change", "track",
            "track-linear", "track-pa-adapt", "pilot-ls", "wide-ls", "wl-ls", "pa-ls", "pn-ls", "pilot-lmmse", "kalman",
            "pa-kalman", "pn-kalman", "genie", "ls-nn", "ls-lin", "lmmse-cov", "lmmse-cov-turbo", "adaptive",
            "perfect-csi")  # the last 6: OFDM
PACKS = ("meta-adv", "dd-mwnet", "dd-naive", "dd-l2rw", "dd-gated", "meta-q8", "meta-q4")


def test_registry_lists_every_builtin_then_the_packs_in_module_list_order():
    assert scheme_names("builtin") == BUILTINS
    assert scheme_names("pack") == PACKS
    assert scheme_names()[: len(BUILTINS) + len(PACKS)] == BUILTINS + PACKS
    with pytest.raises(ConfigError, match="already registered"):
        register_scheme("genie")(GenieScheme)
    with pytest.raises(ConfigError, match="DriftScheme"):
        register_scheme("not-a-scheme")(dict)
    with pytest.raises(ConfigError, match="decide"):
        register_scheme("no-decide")(type("NoDecide", (DriftScheme,), {}))
    with pytest.raises(ConfigError, match="^group: "):
        register_scheme("x", group="extra")
    with pytest.raises(ConfigError, match="^needs: unknown need 'gpu'"):
        register_scheme("x", needs=("gpu",))


def test_default_schemes_are_declared_by_the_schemes_not_built_by_list_surgery():
    """What each scheme needs decides whether it is in the default list (tracker, transmitter PA, phase noise)."""
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT, load_drift_codec, shipped_tracker
    plain = ["static", "meta", "warm", "online-meta", "pilot-ls", "wide-ls", "wl-ls", "pilot-lmmse", "kalman",
             "genie"]  # retrain: by name only (issue 24: most of a frame's time, decodes at chance)
    assert default_schemes() == plain
    online, _, _ = load_drift_codec(DEFAULT_CHECKPOINT)
    assert default_schemes(load_scenario("doppler-fast"), online) == plain
    assert default_schemes(load_scenario("pa-drift"), online) == plain[:7] + ["pa-ls", "pilot-lmmse", "kalman",
                                                                              "pa-kalman", "genie"]
    tracker, _, _ = load_drift_codec(shipped_tracker("doppler-fast", 16))
    assert default_schemes(load_scenario("doppler-fast"), tracker) == plain[:4] + ["track"] + plain[4:]
    pa_tracker, _, _ = load_drift_codec(shipped_tracker("pa-drift", 16))
    assert default_schemes(load_scenario("pa-drift"), pa_tracker)[4:6] == ["track", "track-linear"]
    pn = default_schemes(load_scenario("phase-noise-drift"), online)
    assert "pn-ls" in pn and "pn-kalman" in pn and "pa-ls" not in pn


def test_scheme_settings_are_constructor_keywords_reachable_from_schemes():
    sc = load_scenario("doppler-fast")
    res = run_drift(sc, _model(), schemes="retrain[every=2,steps=1],wide-ls[pre=1,post=0],genie[offsets_db=[-2]]",
                    **SMALL)
    st = res.config["scheme_settings"]
    assert st["retrain"] == {"every": 2, "steps": 1, "lr": 0.01}
    assert st["wide-ls"] == {"pre": 1, "post": 0, "num_taps": None}
    assert res.schemes == ["retrain", "wide-ls", "genie", "genie-2dB"]
    assert (res.config["retrain_every"], res.config["retrain_steps"], res.config["genie_offsets_db"]) == (2, 1, [-2])
    # the same settings through the run_drift keywords of earlier releases
    old = run_drift(sc, _model(), schemes=["retrain", "genie"], retrain_every=2, retrain_steps=1,
                    genie_offsets_db=[-2.0], **SMALL)
    assert old.series("retrain", "block_errors") == res.series("retrain", "block_errors")
    assert old.series("genie-2dB", "block_errors") == res.series("genie-2dB", "block_errors")
    with pytest.raises(ConfigError, match="^schemes: scheme 'wide-ls' has no setting 'width'; allowed: pre, post, "
                                          "num_taps"):
        run_drift(sc, _model(), schemes="wide-ls[width=3]", **SMALL)
    with pytest.raises(ConfigError, match="^scheme_settings: settings for 'kalman'"):
        run_drift(sc, _model(), schemes="meta", scheme_settings={"kalman": {}}, **SMALL)


def test_a_new_receiver_is_one_class(monkeypatch):
    """Register two toy receivers; the loop counts their errors against the payload it drew (seen through
    on_frame), and the built-in schemes are unaffected by their presence."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    seen = []

    @register_scheme("test-oracle")
    class Oracle(DriftScheme):
        def decide(self, sig):
            return Decision(sig.msg_d.clone(), 0.0)

    @register_scheme("test-zero", offset=0)
    class Zero(DriftScheme):
        def __init__(self, name, *, offset):
            super().__init__(name)
            self.offset = offset

        def setup(self, ctx):
            super().setup(ctx)
            seen.append((ctx.links, ctx.k, ctx.n, tuple(ctx.codebook.shape)))

        def decide(self, sig):
            return Decision(torch.full_like(sig.msg_d, self.offset), None)

    sc = load_scenario("doppler-fast")
    sigs = []
    res = run_drift(sc, _model(), schemes=["test-oracle", "genie", "test-zero"], on_frame=_record(sigs), **SMALL)
    ref = run_drift(sc, _model(), schemes=["genie"], **SMALL)
    assert seen == [(2, 8, 8, (256, 8))]
    assert res.schemes == ["test-oracle", "genie", "genie-1dB", "test-zero"]
    assert res.series("test-oracle", "block_errors") == [0, 0, 0]
    for (_, _, sig), f in zip(sigs, res.frames, strict=True):
        msg = sig["msg_d"]
        assert f["schemes"]["test-zero"]["block_errors"] == int((msg != 0).sum())
        bits = sum(bin(int(v)).count("1") for v in msg.flatten())
        assert f["schemes"]["test-zero"]["bit_errors"] == bits
        assert f["schemes"]["test-zero"]["latency_ms"] is None
    assert res.series("genie", "block_errors") == ref.series("genie", "block_errors")


def test_step_by_step_equals_run_drift_and_result_builds_frame_by_frame():
    sc = load_scenario("doppler-fast")
    kw = dict(SMALL, schemes=["static", "warm", "retrain", "pilot-ls", "genie"],
              scheme_settings={"retrain": {"every": 2, "steps": 2}})
    whole = run_drift(sc, _model(), **kw)
    run = DriftRun(sc, _model(), DriftRunConfig(**kw))
    built = DriftResult(config=run.result.config)
    while not run.done:
        rec, sig = run.step()
        assert sig.y_d.shape == (2, 16, 8) and sig.index == rec["frame"]
        built.add_frame(rec)
    with pytest.raises(ConfigError, match="frames"):
        run.step()
    for a, b in zip(whole.frames, built.frames, strict=True):
        for s in a["schemes"]:
            ra = {k: v for k, v in a["schemes"][s].items() if k != "latency_ms"}
            rb = {k: v for k, v in b["schemes"][s].items() if k != "latency_ms"}
            assert ra == rb
    with pytest.raises(ConfigError, match="follow"):
        built.add_frame(built.frames[0])


def test_pilot_ls_against_numpy_least_squares_and_ml():
    sc = load_scenario("doppler-fast")
    model = _model()
    sigs = []
    res = run_drift(sc, model, schemes=["pilot-ls"], on_frame=_record(sigs), **SMALL)
    book = model.encoder.codebook().detach().numpy().astype(np.complex128)
    n, L = 8, 3
    for (_, _, sig), f in zip(sigs, res.frames, strict=True):
        errs = 0
        for b in range(2):
            xp = book[sig["msg_p"][b].numpy()]  # [P, n]
            A = np.concatenate([[[p[r - ell] if r >= ell else 0 for ell in range(L)] for r in range(n)] for p in xp])
            h = np.linalg.lstsq(A, sig["y_p"][b].numpy()[:, :n].reshape(-1).astype(np.complex128), rcond=None)[0]
            imgs = np.stack([np.convolve(c, h)[:n] for c in book])
            d = (np.abs(sig["y_d"][b].numpy()[:, None, :] - imgs[None]) ** 2).sum(-1)
            errs += int((d.argmin(-1) != sig["msg_d"][b].numpy()).sum())
        assert errs == f["schemes"]["pilot-ls"]["block_errors"]


def test_genie_yardsticks_reuse_the_noise_draw():
    sc = load_scenario("doppler-fast")
    res = run_drift(sc, _model(), schemes=["genie"], genie_offsets_db=[0.0, 60.0, -3.0], **SMALL)
    assert res.schemes == ["genie", "genie+0dB", "genie+60dB", "genie-3dB"]
    assert res.series("genie+0dB", "bit_errors") == res.series("genie", "bit_errors")
    assert sum(res.series("genie+60dB", "block_errors")) == 0  # 60 dB more: noiseless in effect
    assert sum(res.series("genie-3dB", "block_errors")) >= sum(res.series("genie", "block_errors"))


def test_config_validation_names_the_key():
    for kw, key in [(dict(frames=0), "frames"), (dict(frames=2, pilots=0), "pilots"), (dict(frames=2, steps=-1), "steps"),
                    (dict(frames=2, schemes=["meta", "oracle"]), "schemes"), (dict(frames=2, schemes=[]), "schemes"),
                    (dict(frames=2, lr=0.0), "lr"), (dict(frames=2, scheme_settings=[1]), "scheme_settings"),
                    (dict(frames=2, device="nodevice"), "device")]:
        with pytest.raises(ConfigError) as ei:
            DriftRunConfig(**kw).validate()
        assert ei.value.field == key, (kw, ei.value)
    sc = load_scenario("doppler-fast")
    for kw, key in [(dict(retrain_lr=-1.0), "retrain_lr"), (dict(genie_offsets_db=[float("nan")]), "genie_offsets_db"),
                    (dict(genie_offsets_db="-1"), "genie_offsets_db"), (dict(num_taps=0), "num_taps")]:
        with pytest.raises(ConfigError) as ei:
            run_drift(sc, _model(), frames=2, schemes=["retrain", "pilot-ls", "genie"], **kw)
        assert ei.value.field == key, (kw, ei.value)
    c = DriftRunConfig(frames=2, schemes="genie,meta,genie").validate()
    assert c.schemes == ["genie", "meta"]
    with pytest.raises(ConfigError) as ei:
        DriftRun(load_scenario("doppler-fast"), DriftAutoencoder(k=4, n=4), DriftRunConfig(frames=2))
    assert ei.value.field == "model"
    with pytest.raises(TypeError, match="nope"):
        run_drift(load_scenario("doppler-fast"), _model(), frames=2, nope=1)


AWGN_TOML = textwrap.dedent("""\
    name = "flat-awgn"
    ebno_db = 4.0
    [codec]
    k = 8
    n = 8
    [[segment]]
    frames = 3
    channel = "awgn"
    """)


def test_results_json_is_strict_with_format_tag_and_round_trips(tmp_path):
    """An AWGN timeline has no fading taps: its drift value (the channel gain) is NaN, which used to be written
    as a bare NaN token. Now: null, and a strict parser accepts the file."""
    sc = parse_scenario(AWGN_TOML)
    res = run_drift(sc, _model(), schemes=["meta", "genie"], frames=3, pilots=4, links=2, payload=8)
    assert all(math.isnan(f["drift"]) for f in res.frames)  # in memory: NaN (plots)
    pj, _ = res.save(tmp_path)
    text = pj.read_text()
    d = json.loads(text, parse_constant=_raise)
    assert d["format"] == FORMAT == "metacomm-drift/1"
    assert list(d) == ["format", "config", "frames", "summary"]
    assert all(f["drift"] is None for f in d["frames"])
    assert d["summary"]["genie"]["latency_ms_mean"] is None
    back = DriftResult.from_dict(d)
    assert back.summary() == res.summary() and back.schemes == res.schemes
    assert all(math.isnan(f["drift"]) for f in back.frames)
    with pytest.raises(ConfigError, match="format"):
        DriftResult.from_dict({"format": "metacomm-results/1", "frames": []})


def test_skip_then_step_reproduces_the_uninterrupted_run_for_stateless_schemes():
    sc = load_scenario("regime-switch")
    kw = dict(frames=5, pilots=4, links=2, payload=8, seed=3, schemes=["pilot-ls", "genie"])
    whole = run_drift(sc, _model(), **kw)
    run = DriftRun(sc, _model(), DriftRunConfig(**kw))
    run.skip(3)
    assert run.position == 3 and run.result.frames == []
    tail = run.run()
    assert [f["frame"] for f in tail.frames] == [3, 4] and run.done
    for a, b in zip(whole.frames[3:], tail.frames, strict=True):
        assert (a["segment"], a["ebno_db"], a["gain_db"]) == (b["segment"], b["ebno_db"], b["gain_db"])
        for s in ("pilot-ls", "genie", "genie-1dB"):
            assert a["schemes"][s]["bit_errors"] == b["schemes"][s]["bit_errors"]
    with pytest.raises(ConfigError, match="num_frames"):
        run.skip(1)
