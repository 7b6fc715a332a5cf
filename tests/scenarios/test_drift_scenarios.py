"""Drift scenario files: schema validation (file + key path + line in every error), built-ins, timeline."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from metacomm import ConfigError
from metacomm.scenarios.drift_scenarios import (
    BUILTIN_SCENARIOS,
    list_scenarios,
    load_scenario,
    parse_scenario,
)

GOOD = textwrap.dedent("""\
    name = "t"
    ebno_db = 10.0
    frame_duration_s = 1e-3
    seed = 3

    [codec]
    k = 4
    n = 4

    [[segment]]
    frames = 5
    channel = "multipath"
    channel_args = { num_taps = 3, mode = "truncate" }
    [segment.drift]
    process = "gauss-markov"
    rho = 0.5

    [[segment]]
    frames = 4
    channel = "rayleigh"
    [segment.drift]
    process = "gauss-markov"
    rho = 0.9
    [segment.snr]
    walk = { step_db = 1.0, min_db = -2.0, max_db = 2.0 }
    """)


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_builtin_loads_and_runs():
    assert sorted(list_scenarios()) == sorted(BUILTIN_SCENARIOS)
    for name in BUILTIN_SCENARIOS:
        sc = load_scenario(name)
        assert sc.name == name and sc.k > 0 and sc.n > 0 and sc.num_frames > 0
        frames = list(sc.frames(3, batch_size=2))
        f = frames[-1]
        if getattr(sc, "link_kind", "block") == "ofdm":  # slots of an OFDM grid: the frame carries h_freq
            c = sc.link
            assert tuple(f.state["h_freq"].shape) == (2, 1, c.num_rx_ant, 1, 1, c.num_ofdm_symbols, c.fft_size)
            assert torch.isfinite(torch.view_as_real(f.state["h_freq"])).all() and f.no.shape == (2,)
            continue
        x = torch.ones(2, math.ceil(sc.n), dtype=torch.complex64)
        y = f.channel(x, f.no, state=f.state, generator=torch.Generator().manual_seed(0))
        assert y.shape[0] == 2 and torch.isfinite(torch.view_as_real(y)).all()


def test_park_settings_of_doppler_builtins():
    for name, rho in (("doppler-fast", 0.5), ("doppler-slow", 0.99)):
        sc = load_scenario(name)
        assert (sc.k, sc.n, sc.ebno_db) == (8, 8, 10.0)
        seg = sc.segments[0]
        assert seg.fading.rho == rho and seg.channel.num_taps == 3
        f = next(sc.frames(1, batch_size=3))
        assert f.state["taps"].shape == (3, 3)
        # N0 = 1 / (Eb/N0 * k/n) with Eb/N0 = 10 dB, k/n = 1
        assert torch.allclose(f.no, torch.full((3,), 0.1))


def test_scenario_frames_autocorrelation_doppler_fast():
    sc = load_scenario("doppler-fast")
    frames = list(sc.frames(2, batch_size=20000))
    h0, h1 = frames[0].state["taps"], frames[1].state["taps"]
    prod = (h1 * h0.conj()).real * 3.0  # taps CN(0, 1/3): normalise by the tap power
    se = float(prod.std()) / math.sqrt(prod.numel())
    assert abs(float(prod.mean()) - 0.5) < 5 * se


def test_regime_switch_occurs_at_configured_frames(tmp_path):
    sc = load_scenario("regime-switch")
    assert sc.timeline.boundaries == [0, 250, 500, 750]
    frames = list(sc.frames(252, batch_size=1))  # 3-tap segment, then the first TDL-A frames
    assert [f.segment for f in frames] == [0] * 250 + [1] * 2
    assert frames[249].state["taps"].shape[-1] == 3
    assert frames[250].state["taps"].shape[-1] > 3
    # every boundary of a (cheap) four-segment file, the last with a held IQ-imbalanced device
    text = GOOD + textwrap.dedent("""\
        [[segment]]
        frames = 3
        channel = "multipath"
        channel_args = { num_taps = 2 }
        [[segment]]
        frames = 2
        channel = "rayleigh"
        [segment.impairment]
        kind = "random-iq-imbalance"
        state = "hold"
        """)
    sc = load_scenario(_write(tmp_path, text))
    assert sc.timeline.boundaries == [0, 5, 9, 12]
    frames = list(sc.frames(16, batch_size=2))
    assert [f.segment for f in frames] == [0] * 5 + [1] * 4 + [2] * 3 + [3] * 4
    assert [f.state["taps"].shape[-1] for f in frames[9:12]] == [2, 2, 2]
    assert set(frames[12].state) == {"0.epsilon", "0.delta", "1.h"}
    # "hold": the device's IQ draw is the same in every frame of its segment; the fading is not
    assert torch.equal(frames[12].state["0.epsilon"], frames[15].state["0.epsilon"])
    assert not torch.equal(frames[12].state["1.h"], frames[13].state["1.h"])


def test_same_seed_same_frames_file(tmp_path):
    sc = load_scenario(_write(tmp_path, GOOD))
    a = list(sc.frames(batch_size=3))
    b = list(sc.frames(batch_size=3))
    c = list(sc.frames(batch_size=3, seed=4))
    assert len(a) == 9 and [f.segment for f in a] == [0] * 5 + [1] * 4
    for fa, fb in zip(a, b, strict=True):
        for k in fa.state:
            assert torch.equal(fa.state[k], fb.state[k])
        assert torch.equal(fa.ebno_db, fb.ebno_db)
    assert not torch.equal(a[0].state["taps"], c[0].state["taps"])
    # SNR walk of segment 1 stays in 10 dB + [-2, 2]
    e = torch.stack([f.ebno_db for f in a[5:]])
    assert float(e.min()) >= 8.0 - 1e-5 and float(e.max()) <= 12.0 + 1e-5


def _bad(tmp_path, text, *needles):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_scenario(p)
    msg = str(ei.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_unknown_key_names_file_key_and_line(tmp_path):
    text = GOOD.replace("rho = 0.9\n", "rho = 0.9\nspeed = 3\n")
    msg = _bad(tmp_path, text, "segment[1].drift.speed", "allowed:", "rho")
    line = text.splitlines().index("speed = 3") + 1
    assert f":{line}:" in msg
    _bad(tmp_path, GOOD.replace('name = "t"', 'name = "t"\ncolour = 1'), "colour", "allowed:", "ebno_db")
    _bad(tmp_path, GOOD.replace("frames = 4\n", "frames = 4\nduration = 2\n"), "segment[1].duration")


def test_negative_duration(tmp_path):
    text = GOOD.replace("frames = 4", "frames = -4")
    msg = _bad(tmp_path, text, "segment[1].frames", "positive integer")
    assert f":{text.splitlines().index('frames = -4') + 1}:" in msg


def test_rho_outside_unit_interval(tmp_path):
    text = GOOD.replace("rho = 0.5", "rho = 1.5")
    msg = _bad(tmp_path, text, "segment[0].drift.rho", "[0, 1]")
    assert f":{text.splitlines().index('rho = 1.5') + 1}:" in msg
    _bad(tmp_path, GOOD.replace("rho = 0.9", "rho = -0.1"), "segment[1].drift.rho", "[0, 1]")


def test_unknown_channel_and_bad_values(tmp_path):
    _bad(tmp_path, GOOD.replace('"rayleigh"', '"rayleih"'), "segment[1].channel", "allowed:", "tdl-a")
    _bad(tmp_path, GOOD.replace('"gauss-markov"\nrho = 0.5', '"brownian"\nrho = 0.5'),
         "segment[0].drift.process", "gauss-markov, jakes, iid, static")
    _bad(tmp_path, GOOD.replace("num_taps = 3", "num_taps = 0"), "segment[0].channel_args.num_taps")
    _bad(tmp_path, GOOD.replace("min_db = -2.0, max_db = 2.0", "min_db = 2.0, max_db = -2.0"),
         "segment[1].snr.walk.max_db")
    _bad(tmp_path, GOOD.replace("[codec]\nk = 4\nn = 4\n", ""), "codec", "missing")
    _bad(tmp_path, GOOD.replace("rho = 0.5", "doppler_hz = 600.0"), "segment[0].drift.doppler_hz", "J0")
    _bad(tmp_path, GOOD + "[segment.impairment]\nkind = \"iq-imbalance\"\n[segment.impairment.params]\n"
         "epsilon = { ramp = [0.0, 2.0] }\n", "segment[1].impairment.params.epsilon")
    _bad(tmp_path, "ebno_db = [", "invalid TOML")


def test_missing_file_and_unknown_name(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as ei:
        load_scenario(missing)
    assert str(missing) in str(ei.value)
    with pytest.raises(ConfigError, match="doppler-fast"):
        load_scenario("doppler-medium")


def test_iq_drift_ramps_parameters():
    sc = load_scenario("iq-drift")
    assert (sc.k, sc.n) == (4, 1) and sc.plot == "epsilon"
    # Es/N0 = 20 dB <=> N0 = 0.01
    frames = list(sc.frames(batch_size=2))
    assert torch.allclose(frames[0].no, torch.full((2,), 0.01), rtol=1e-5)
    eps = [f.params["epsilon"] for f in frames]
    assert eps[0] == 0.0 and eps[-1] == pytest.approx(0.15) and eps[500] == pytest.approx(0.15 * 500 / 999)
    assert frames[-1].params["delta_deg"] == pytest.approx(15.0)


def test_parse_from_string_with_jakes_and_impairment_walk():
    text = GOOD.replace('process = "gauss-markov"\nrho = 0.5', 'process = "jakes"\nspeed_mps = 30.0\n'
                        "carrier_hz = 3.5e9") + textwrap.dedent("""\
        [segment.impairment]
        kind = "phase-noise"
        position = "rx"
        [segment.impairment.params]
        variance = { walk = { start = 1e-3, step = 1e-4, min = 0.0, max = 1e-2 } }
        """)
    sc = parse_scenario(text, source="mem.toml")
    assert sc.segments[0].fading.doppler_hz == pytest.approx(30.0 * 3.5e9 / 299_792_458.0)
    frames = list(sc.frames(batch_size=2))
    v = [f.params["variance"] for f in frames[5:]]
    assert all(0.0 <= x <= 1e-2 for x in v) and len(set(v)) > 1


def test_drift_scenario_name_and_deprecated_alias():
    import warnings

    from metacomm.scenarios import drift_scenarios as ds

    sc = load_scenario("doppler-fast")
    assert type(sc) is ds.DriftScenario and "DriftScenario" in ds.__all__ and "Scenario" not in ds.__all__
    with pytest.warns(DeprecationWarning, match="DriftScenario"):
        alias = ds.Scenario
    assert alias is ds.DriftScenario
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from metacomm.scenarios.drift_scenarios import DriftScenario  # the new name does not warn
    assert DriftScenario is ds.DriftScenario
    with pytest.raises(AttributeError):
        _ = ds.NoSuchName
