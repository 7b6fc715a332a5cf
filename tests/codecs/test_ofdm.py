"""The coded OFDM link (metacomm.codecs.ofdm): shapes, explicit randomness, receivers, Eb/N0, validation, the
``metacomm ber --link`` command, and (slow) the fidelity target against Sionna's neural-receiver tutorial."""

import json
import math

import numpy as np
import pytest
import sionna.phy
import torch

from metacomm import ConfigError
from metacomm.channels.base import make_generator
from metacomm.codecs.ofdm import (
    RECEIVERS,
    OFDMLink,
    OFDMLinkConfig,
    ebno_overhead_db,
    load_link_config,
    ofdm_ebnodb_to_no,
    preset_names,
)

#: a tiny grid: 36 subcarriers (2 + 1 guards, DC) x 5 symbols, pilots on symbols 1 and 3: 3 x 32 = 96 data REs,
#: QPSK -> one rate-1/2 codeword n = 192, k = 96 per grid
TINY = {"name": "tiny", "fft_size": 36, "num_ofdm_symbols": 5, "pilot_ofdm_symbol_indices": [1, 3],
        "num_guard_carriers": [2, 1], "dc_null": True, "channel": "tdl-a", "delay_spread": 100e-9, "speed": 3.0,
        "num_rx_ant": 2, "cov_draws": 200, "num_bp_iter": 10}


def tiny(**kw) -> OFDMLinkConfig:
    return OFDMLinkConfig(**{**TINY, **kw}).validate()


def _rng_states():
    return sionna.phy.config.torch_rng("cpu").get_state().clone(), torch.random.get_rng_state().clone()


def test_sizes_shapes_and_dtypes():
    cfg = tiny()
    assert (cfg.num_effective_subcarriers, cfg.num_data_symbols, cfg.n, cfg.k, cfg.num_codewords, cfg.pad_bits) == \
        (32, 96, 192, 96, 1, 0)
    link = OFDMLink(cfg, "ls-lin")
    slot = link.draw(3, 5.0, make_generator(0))
    assert slot.bits.shape == (3, 96) and slot.bits.dtype == torch.float32
    assert slot.x.shape == (3, 1, 1, 5, 36) and slot.x.dtype == torch.complex64
    assert slot.h_freq.shape == (3, 1, 2, 1, 1, 5, 36) and slot.y.shape == (3, 1, 2, 5, 36)
    assert slot.no.shape == (3,) and slot.no.dtype == torch.float32
    # Es = 1 on the data and pilot REs, 0 on the guards and DC
    e = slot.x[0, 0, 0].abs().square()
    assert torch.allclose(e[:, 2:35].sum(-1), torch.full((5,), 32.0)) and float(e[:, :2].sum() + e[:, 35:].sum()) == 0
    llr = link.llr(slot)
    assert llr.shape == (3, 192) and torch.isfinite(llr).all()
    bits, bits_hat = link(3, 5.0, make_generator(0))
    assert bits_hat.shape == bits.shape == (3, 96) and bits_hat.dtype == torch.float32
    assert set(bits_hat.unique().tolist()) <= {0.0, 1.0}
    assert link.num_info_bits == 96 and link.describe()["codewords_per_grid"] == 1


def test_several_codewords_per_grid_and_padding():
    cfg = tiny(codeword_length=60)  # 192 coded bits: 3 codewords of 60 + 12 padding bits
    assert (cfg.num_codewords, cfg.pad_bits, cfg.k) == (3, 12, 30)
    link = OFDMLink(cfg, "perfect-csi")
    slot = link.draw(5, 20.0, make_generator(1))  # 5 blocks -> 2 grids, the 6th codeword is not scored
    assert slot.num_grids == 2 and slot.bits.shape == (5, 30) and slot.all_bits.shape == (6, 30)
    bh = link.decide(slot)
    assert bh.shape == (5, 30) and int(link.score(slot, bh)[1].sum()) == 0


def test_reproducible_from_the_generator_alone():
    link = OFDMLink(tiny(), "ls-nn")
    before = _rng_states()
    b1, h1 = link(4, 2.0, make_generator(5))
    b2, h2 = link(4, 2.0, make_generator(5))
    b3, _ = link(4, 2.0, make_generator(6))
    after = _rng_states()
    assert torch.equal(b1, b2) and torch.equal(h1, h2) and not torch.equal(b1, b3)
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))


def test_perfect_csi_error_free_at_high_snr_and_fails_at_very_low_snr():
    link = OFDMLink(tiny(), "perfect-csi")
    b, bh = link(16, 12.0, make_generator(2))
    assert torch.equal(b, bh)
    b, bh = link(16, -10.0, make_generator(2))
    assert bool((b != bh).any(-1).all())


def test_perfect_csi_beats_ls_lin_on_the_same_draws_and_all_receivers_run():
    link = OFDMLink(tiny(), "perfect-csi")
    slot = link.draw(32, 2.0, make_generator(3))
    errors = {}
    for rx in RECEIVERS:
        llr = link.llr(slot, rx)
        assert llr.shape == (32, 192) and torch.isfinite(llr).all(), rx
        errors[rx] = int(link.score(slot, link.decide(slot, rx))[1].sum())
    assert errors["perfect-csi"] <= errors["ls-lin"]
    assert errors["ls-lin"] >= 16 and errors["perfect-csi"] <= 4, errors


def test_lmmse_covariances_are_cached_per_config():
    a = OFDMLink(tiny(), "lmmse-cov").receiver
    b = OFDMLink(tiny(), "lmmse-cov").receiver
    assert a.cov_freq.shape == (32, 32) and a.cov_time.shape == (5, 5) and a.cov_space.shape == (2, 2)
    assert torch.equal(a.cov_freq, b.cov_freq)
    c = OFDMLink(tiny(cov_seed=2), "lmmse-cov").receiver
    assert not torch.equal(a.cov_freq, c.cov_freq)


def test_ebno_to_no_by_hand_and_against_sionna():
    """Tutorial grid: k = 1392, n = 2784, m = 2, 14 x 116 = 1624 non-null REs, 1392 data REs."""
    from sionna.phy.utils import ebnodb2no
    cfg = load_link_config("sionna-nrx-tutorial")
    for eb in (-1.28, 0.0, 2.52):
        ebno = 10 ** (eb / 10)
        assert ofdm_ebnodb_to_no(eb, cfg) == pytest.approx(1.0 / (ebno * 0.5 * 2))  # "data": 1/(Eb/N0 r m)
        assert ofdm_ebnodb_to_no(eb, cfg, "resource-grid") == pytest.approx(1624 / (ebno * 1392))
        assert float(ebnodb2no(eb, 2, 0.5, precision="double", device="cpu")) == \
            pytest.approx(ofdm_ebnodb_to_no(eb, cfg))
    assert ebno_overhead_db(cfg) == pytest.approx(10 * math.log10(1624 / 1392))
    # with a cyclic prefix the resource-grid convention also charges its energy; equal to Sionna's
    cfg_cp = OFDMLinkConfig(**{**cfg.to_dict(), "cyclic_prefix_length": 12}).validate()
    rg = OFDMLink(cfg_cp, "ls-nn").resource_grid()
    want = float(ebnodb2no(1.0, 2, 0.5, resource_grid=rg, precision="double", device="cpu"))
    assert ofdm_ebnodb_to_no(1.0, cfg_cp, "resource-grid") == pytest.approx(want)
    assert want == pytest.approx(14 * (1 + 12 / 128) * 116 / (10 ** 0.1 * 1392))


def test_the_tutorial_preset_has_the_tutorial_settings():
    assert "sionna-nrx-tutorial" in preset_names()
    c = load_link_config("sionna-nrx-tutorial")
    assert (c.channel, c.delay_spread, c.carrier_frequency, c.speed) == ("cdl-c", 100e-9, 3.5e9, 10.0)
    assert (c.subcarrier_spacing, c.fft_size, c.num_ofdm_symbols) == (30e3, 128, 14)
    assert (c.pilot_ofdm_symbol_indices, c.num_guard_carriers, c.dc_null) == ([2, 11], [5, 6], True)
    assert (c.bits_per_symbol, c.coderate, c.n, c.k, c.num_codewords, c.pad_bits) == (2, 0.5, 2784, 1392, 1, 0)
    assert (c.num_tx_ant, c.num_rx_ant, c.rx_polarization, c.normalize_channel) == (1, 2, "VH", "grid")
    assert (c.ebno_convention, c.interleave, c.num_bp_iter, c.demapping) == ("data", False, 20, "app")
    rg = OFDMLink(c, "ls-nn").resource_grid()
    assert (rg.num_effective_subcarriers, rg.num_data_symbols) == (116, 1392)


@pytest.mark.parametrize(("change", "field", "text"), [
    ({"channel": "cdl-x"}, "channel", "allowed: cdl-a"),
    ({"speed": float("nan")}, "speed", ">= 0"),
    ({"speed": -3}, "speed", ">= 0"),
    ({"num_rx_ant": 5}, "num_rx_ant", "1..4"),
    ({"num_tx_ant": 2}, "num_tx_ant", "allowed 1"),
    ({"bits_per_symbol": 3}, "bits_per_symbol", "2 (QPSK)"),
    ({"pilot_ofdm_symbol_indices": [7]}, "pilot_ofdm_symbol_indices", "0..4"),
    ({"num_guard_carriers": [20, 20]}, "num_guard_carriers", "guard"),
    ({"codeword_length": 400}, "codeword_length", "do not fit"),
    ({"codeword_length": 191}, "codeword_length", "multiple"),
    ({"coderate": 0.99}, "codeword_length", "code rate"),
    ({"ebno_convention": "es"}, "ebno_convention", "allowed: data, resource-grid"),
    ({"lmmse_order": "t-f-s", "num_rx_ant": 1}, "lmmse_order", "one receive antenna"),
    ({"normalize_channel": "x"}, "normalize_channel", "allowed: grid, none"),
])
def test_bad_config_names_the_key(change, field, text):
    with pytest.raises(ConfigError) as e:
        tiny(**change)
    assert e.value.field == field and text in str(e.value) and "\n" not in str(e.value), str(e.value)


def _write(tmp_path, text, name="tiny.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


TINY_TOML = """\
name = "tiny"
fft_size = 36
num_ofdm_symbols = 5
pilot_ofdm_symbol_indices = [1, 3]
num_guard_carriers = [2, 1]
channel = "tdl-a"
speed = 3.0
num_rx_ant = 2
num_bp_iter = 10
"""


def test_toml_files_and_their_errors(tmp_path):
    cfg = load_link_config(str(_write(tmp_path, TINY_TOML)))
    assert (cfg.name, cfg.fft_size, cfg.n, cfg.channel) == ("tiny", 36, 192, "tdl-a")
    bad = _write(tmp_path, TINY_TOML + "foo = 1\nspeeed = 2\n", "bad.toml")
    with pytest.raises(ConfigError) as e:
        load_link_config(str(bad))
    assert e.value.field == "link" and "unknown keys foo, speeed" in str(e.value) and "allowed:" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_link_config(str(_write(tmp_path, TINY_TOML + "speed = -1\n", "dup.toml")))
    assert e.value.field == "link"
    with pytest.raises(ConfigError) as e:
        load_link_config(str(_write(tmp_path, TINY_TOML.replace("speed = 3.0", "speed = -1.0"), "neg.toml")))
    assert e.value.field == "link" and "speed" in str(e.value) and "neg.toml" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_link_config("no-such-link")
    assert e.value.field == "link" and "sionna-nrx-tutorial" in str(e.value)


# -- the command line ------------------------------------------------------------------------------------------
def _main(argv):
    from metacomm.cli.main import main
    return main(argv)


def test_cli_ber_link_writes_the_sweep_schema(tmp_path, capsys):
    link = _write(tmp_path, TINY_TOML)
    out = tmp_path / "out"
    rc = _main(["ber", "--link", str(link), "--receiver", "ls-lin", "--ebno-db", "8,12", "--batch-size", "4",
                "--max-blocks", "8", "--target-block-errors", "2", "--quiet", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["points"]) == 2
    for p in res["points"]:
        for key in ("ebno_db", "ber", "bler", "bler_ci", "ber_ci", "bit_errors", "bits", "block_errors", "blocks"):
            assert key in p, key
        assert p["blocks"] <= 8 and p["bits"] == 96 * p["blocks"]
    cfg = res["config"]
    assert cfg["link"] == "tiny" and cfg["receiver"] == "ls-lin" and cfg["block_length_bits"] == 96
    assert cfg["link_config"]["fft_size"] == 36
    assert (out / "results.csv").exists() and (out / "ber.png").exists()


@pytest.mark.parametrize(("extra", "flag"), [
    (["--codec", "qpsk"], "--codec"),
    (["--channel", "awgn"], "--channel"),
    (["--receiver", "zf"], "--receiver"),
    (["--link", "nope"], "--link"),
])
def test_cli_ber_link_errors_are_one_line(tmp_path, capsys, extra, flag):
    link = _write(tmp_path, TINY_TOML)
    argv = ["ber", "--link", str(link), "--ebno-db", "0", "--out", str(tmp_path / "o")]
    if extra[0] == "--link":
        argv[2] = extra[1]
    else:
        argv += extra
    rc = _main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and flag in err, err


def test_cli_ber_receiver_needs_link(tmp_path, capsys):
    rc = _main(["ber", "--codec", "qpsk", "--channel", "awgn", "--receiver", "ls-nn", "--ebno-db", "0",
                "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--receiver" in err and "--link" in err, err


def test_cli_ber_without_link_still_needs_codec_and_channel(tmp_path, capsys):
    rc = _main(["ber", "--ebno-db", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--codec" in err, err


# -- fidelity (slow) -------------------------------------------------------------------------------------------
def _crossing(points, target=1e-2):
    """Eb/N0 where log10(BLER) crosses log10(target), linearly interpolated between the two bracketing points;
    with the Clopper-Pearson bounds in place of the estimates it gives the crossing's interval."""
    def cross(vals):
        for (e0, b0), (e1, b1) in zip(vals, vals[1:], strict=False):
            if b0 >= target > b1 and b1 > 0:
                t = (math.log10(b0) - math.log10(target)) / (math.log10(b0) - math.log10(b1))
                return e0 + t * (e1 - e0)
        return math.nan
    est = cross([(p.ebno_db, p.bler) for p in points])
    lo = cross([(p.ebno_db, p.bler_ci[0]) for p in points])  # the lower BLER bounds cross earlier
    hi = cross([(p.ebno_db, p.bler_ci[1]) for p in points])
    return est, lo, hi


@pytest.mark.slow
@pytest.mark.parametrize(("receiver", "ebno", "published"), [
    ("perfect-csi", [-2.0, -1.75, -1.5, -1.25, -1.0], -1.28),
    ("ls-nn", [2.0, 2.25, 2.5, 2.75], 2.52),
])
def test_fidelity_to_the_sionna_tutorial(receiver, ebno, published):
    """On ``sionna-nrx-tutorial`` the Eb/N0 where BLER crosses 1e-2 lies within 0.2 dB of Sionna's published value
    (perfect CSI + LMMSE -1.28 dB, LS nearest-neighbour + LMMSE +2.52 dB).

    Tolerance logic: the crossing is interpolated linearly in log10(BLER) between the two sweep points that bracket
    1e-2 (0.25 dB apart). Its 95 % interval is the crossing of the points' Clopper-Pearson bounds (lower bounds
    -> earlier crossing, upper -> later). The test requires (a) the interval to be narrower than 0.3 dB, i.e. enough
    blocks were simulated that the measurement can tell (100 block errors per point aimed for, at most 8064 blocks
    per point), and (b) the interval to overlap [published - 0.2, published + 0.2] dB, with the point estimate
    within 0.2 dB + half the interval's width. Runs ~10-15 minutes per receiver on one CPU thread.
    """
    from metacomm.sims.engine import simulate
    link = OFDMLink("sionna-nrx-tutorial", receiver)
    res = simulate(link, ebno, batch_size=128, max_blocks=8064, target_block_errors=100, seed=0, device="cpu",
                   quiet=True)
    est, lo, hi = _crossing(res.points)
    assert np.isfinite([est, lo, hi]).all(), [(p.ebno_db, p.bler) for p in res.points]
    assert hi - lo < 0.3, (est, lo, hi)
    assert lo <= published + 0.2 and hi >= published - 0.2, (est, lo, hi)
    assert abs(est - published) <= 0.2 + (hi - lo) / 2, (est, lo, hi)
