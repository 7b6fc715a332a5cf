"""The nr-pusch link (Sionna's PUSCHTransmitter/PUSCHReceiver over metacomm's 3GPP channel): the preset's sizes
are TS 38.214's, bad settings name their key, the draws are reproducible from the explicit generator, perfect CSI
decodes a clean channel, and the CLI's `ber --link nr-pusch` defaults to PUSCHReceiver's own LS + linear."""

from __future__ import annotations

import pytest
import torch

from metacomm._validation import ConfigError
from metacomm.codecs.nr_pusch import PUSCHLink, PUSCHLinkConfig, pusch_config_from_dict
from metacomm.codecs.ofdm_config import load_link_config

torch.set_num_threads(1)
SMALL = dict(num_prb=4, mcs_index=4, channel="tdl-a", num_rx_ant=1, speed=3.0, delay_spread=30e-9)


def test_the_preset_is_ts_38214_mcs14_on_16_prb():
    c = load_link_config("nr-pusch")
    assert isinstance(c, PUSCHLinkConfig) and c.fft_size == 192
    pc = c.pusch_config()
    assert int(pc.tb.num_bits_per_symbol) == 4 and abs(float(pc.tb.target_coderate) - 0.5400) < 1e-3
    # TS 38.214 TBS for 16 PRB, 1 DMRS + 1 additional (2 x 12 REs/PRB with CDM groups 2): 12 x 12 x 16 = 2304 data
    # REs x 4 bits x 0.54 -> TBS 4992 (with CRC)
    assert c.k == 4992 and c.n == 2304 * 4


@pytest.mark.parametrize("key, value", [("num_prb", 0), ("subcarrier_spacing", 20), ("mcs_index", 40),
                                        ("channel", "tdl-z"), ("speed", float("nan")), ("num_rx_ant", 5),
                                        ("dmrs_additional_position", 7)])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        pusch_config_from_dict({**SMALL, key: value})
    assert e.value.field == key


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="fft_size"):
        pusch_config_from_dict({**SMALL, "fft_size": 64})


def test_draws_come_from_the_explicit_generator():
    link = PUSCHLink(SMALL, "ls-lin")
    a = link(4, 5.0, torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    b = link(4, 5.0, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == (4, link.k)


def test_perfect_csi_decodes_at_high_snr_and_ls_is_not_better():
    g = torch.Generator().manual_seed(0)
    link = PUSCHLink(SMALL, "perfect-csi")
    bits, hat = link(8, 25.0, g)
    assert torch.equal(bits, hat) and link.last_crc_fail == 0
    low = PUSCHLink(SMALL, "ls-nn")(8, -5.0, torch.Generator().manual_seed(0))
    assert (low[0] != low[1]).any()  # far below threshold: errors (the link is not returning its input)


def test_the_ber_command_defaults_to_ls_linear_for_nr_pusch(tmp_path):
    import json

    from metacomm.cli.main import main
    path = tmp_path / "small.toml"
    path.write_text('kind = "nr-pusch"\n' + "\n".join(
        f"{k} = {v!r}".replace("'", '"') for k, v in SMALL.items()) + "\n")
    out = tmp_path / "o"
    rc = main(["ber", "--link", str(path), "--ebno-db", "10", "--max-blocks", "4", "--batch-size", "4",
               "--out", str(out)])
    assert rc in (0, None)
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["receiver"] == "ls-lin" and doc["points"][0]["blocks"] == 4


def test_two_layers_kbest_beats_lmmse_detection_on_the_same_draws():
    """Two streams from a cross-polarised UE to 2 antennas: near-ML (K-best) detection makes fewer TB errors than
    LMMSE detection on the same slots (estimates from the same DMRS; and with the true channel)."""
    two = {**SMALL, "mcs_index": 9, "num_rx_ant": 2, "num_layers": 2, "channel": "tdl-c", "delay_spread": 100e-9}
    errs = {}
    for rx in ("ls-lin", "ls-lin-kbest", "perfect-csi", "perfect-csi-kbest"):
        link = PUSCHLink(two, rx)
        e = 0
        for seed in range(3):
            b, bh = link(16, 6.0, torch.Generator().manual_seed(seed))
            e += int((b != bh).any(-1).sum())
        errs[rx] = e
    assert errs["ls-lin-kbest"] < errs["ls-lin"] and errs["perfect-csi-kbest"] < errs["perfect-csi"], errs


@pytest.mark.parametrize("bad, field", [({"num_layers": 3}, "num_layers"), ({"num_layers": 2, "num_rx_ant": 1},
                                                                              "num_layers")])
def test_more_streams_than_allowed_is_refused(bad, field):
    with pytest.raises(ConfigError) as e:
        pusch_config_from_dict({**SMALL, **bad})
    assert e.value.field == field


def test_the_kronecker_link_refuses_two_transmit_antennas():
    from metacomm.codecs.ofdm_config import OFDMLinkConfig
    with pytest.raises(ConfigError) as e:
        OFDMLinkConfig(num_tx_ant=2).validate()
    assert e.value.field == "num_tx_ant"
