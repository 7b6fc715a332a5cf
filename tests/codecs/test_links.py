"""PilotLink and the codec registry: link mechanics, energy bookkeeping, channel dispatch, errors."""

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import AWGN, Compose, make_generator
from metacomm.channels.fading import RayleighBlockFading
from metacomm.channels.impairments import PhaseOffset
from metacomm.channels.multipath import MultipathBlockFading
from metacomm.codecs import CODEC_NAMES, Hamming74, PilotLink, UncodedQAM, make_codec, make_link
from metacomm.codecs.base import CodecLink
from metacomm.codecs.links import fading_state_key

torch.set_num_threads(1)


class RecordingRayleigh(RayleighBlockFading):
    """Rayleigh block fading that records the N0 and block lengths it is called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def apply(self, x, no, state, generator, noise):
        self.calls.append((x.shape[-1], float(no.flatten()[0])))
        return super().apply(x, no, state, generator, noise)


def test_pilot_energy_not_counted_in_eb():
    ch = RecordingRayleigh()
    codec = Hamming74("ml", num_codewords=4)
    link = PilotLink(codec, ch, num_pilots=10)
    link(8, 6.0, make_generator(0))
    n0 = 1 / (10 ** 0.6 * 4 / 7)  # N0 = 1 / (Eb/N0 * rate), rate = 4/7, independent of the pilots
    assert [c[0] for c in ch.calls] == [10, 28]  # pilot block, then the data block
    assert all(c[1] == pytest.approx(n0) for c in ch.calls)


def test_reproducible_and_common_noise_between_estimators(device):
    codec = UncodedQAM(2, 32, device=device)
    ch = RayleighBlockFading()
    a = PilotLink(codec, ch, 8, "ls")(64, 5.0, make_generator(3, device))
    b = PilotLink(codec, ch, 8, "ls")(64, 5.0, make_generator(3, device))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = PilotLink(codec, ch, 8, "perfect")(64, 5.0, make_generator(3, device))
    assert torch.equal(a[0], c[0])  # same bits; pilots are transmitted in both cases


def test_flat_perfect_csi_is_genie_equaliser():
    """Perfect CSI: x_hat = y / h exactly, no_eff = N0/|h|^2 (checked against the state)."""
    codec = UncodedQAM(4, 16)
    link = PilotLink(codec, RayleighBlockFading(), 8, "perfect")
    g = make_generator(1)
    state = link.channel.sample_state(4, 16, generator=g)
    y = torch.randn(4, 16, dtype=torch.complex64, generator=g)
    x_hat, no_eff = link.equalize(y, None, None, 0.1, state)
    torch.testing.assert_close(x_hat, y / state["h"])
    torch.testing.assert_close(no_eff, (0.1 / state["h"].abs() ** 2).expand(4, 16))


@pytest.mark.parametrize("estimator", ["perfect", "ls"])
@pytest.mark.parametrize("mode", ["truncate", "full"])
def test_multipath_lmmse_error_free_at_high_snr(estimator, mode):
    codec = UncodedQAM(2, 24)
    link = PilotLink(codec, MultipathBlockFading(3, mode=mode), 12, estimator)
    assert link.equalizer == "lmmse" and link.num_taps == 3
    bits, bits_hat = link(100, 40.0, make_generator(5))
    err = (bits != bits_hat).float().reshape(100, 24, 2)
    if mode == "full":
        assert err.mean().item() < 1e-3
    else:
        # Truncated convolution: the last symbols are seen only through the first taps; for non-minimum-phase
        # taps a linear equaliser cannot recover them at any SNR. Everything before the tail must be right.
        assert err[:, :-3].sum().item() == 0
        assert err.mean().item() < 0.03


def test_ls_close_to_perfect_csi_and_worse_with_few_pilots():
    codec = UncodedQAM(1, 16)
    ch = RayleighBlockFading()

    def ber(est, p):  # 20000 fading blocks: relative std of the BER estimate ~2.5%
        b, bh = PilotLink(codec, ch, p, est)(20000, 8.0, make_generator(21))
        return (b != bh).double().mean().item()

    perfect, ls64, ls1 = ber("perfect", 64), ber("ls", 64), ber("ls", 1)
    g = 10 ** 0.8
    closed = 0.5 * (1 - math.sqrt(g / (1 + g)))  # BPSK over Rayleigh, perfect CSI
    assert perfect == pytest.approx(closed, rel=0.1)
    assert perfect <= ls64 < 1.15 * perfect  # 64 pilots: ~0.07 dB estimation loss
    assert ls1 > 1.3 * perfect  # a single pilot: ~3 dB loss


def test_compose_state_keys_and_dispatch():
    ch = Compose(PhaseOffset(10.0), RayleighBlockFading())
    link = make_link("qpsk", ch, block_length=64)
    assert isinstance(link, PilotLink) and link.state_key == "1.h" and link.kind == "flat"
    b, bh = link(16, 30.0, make_generator(0))
    assert b.shape == bh.shape == (16, 64)
    assert fading_state_key({"taps": torch.zeros(1, 3)}) == ("taps", "multipath")
    with pytest.raises(ConfigError, match="^channel: "):
        fading_state_key({"0.h": torch.zeros(1, 1), "1.h": torch.zeros(1, 1)})


def test_make_link_dispatch():
    assert isinstance(make_link("bpsk", AWGN()), CodecLink)
    assert isinstance(make_link("hamming74", RayleighBlockFading(), estimator="perfect"), PilotLink)
    assert isinstance(make_link(make_codec("qam16", block_length=64), MultipathBlockFading(2)), PilotLink)
    with pytest.raises(ConfigError, match="equalizer"):
        make_link("bpsk", RayleighBlockFading(), equalizer="lmmse")
    with pytest.raises(ConfigError, match="equalizer"):
        make_link("bpsk", MultipathBlockFading(3), equalizer="one-tap")
    with pytest.raises(ConfigError, match="num_pilots"):
        make_link("bpsk", MultipathBlockFading(4), num_pilots=3)
    with pytest.raises(ConfigError, match="estimator"):
        make_link("bpsk", RayleighBlockFading(), estimator="mmse")


def test_time_varying_taps_rejected():
    from metacomm.channels.tdl import TDL

    with pytest.raises(ConfigError, match="block-constant taps"):
        make_link("qpsk", TDL("A", speed=30.0), block_length=64)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_make_codec_defaults(name):
    codec = make_codec(name)
    expected = {"bpsk": (1024, 1024), "qpsk": (1024, 512), "qam16": (1024, 256), "qam64": (1020, 170),
                "hamming74": (4, 7), "ldpc5g": (512, 512)}[name]
    assert (codec.num_info_bits, codec.num_channel_uses) == expected
    assert not list(codec.parameters())


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="turbo"), r"^codec: unknown codec 'turbo'; allowed: bpsk, qpsk, qam16, qam64, hamming74, ldpc5g"),
    (dict(name="qpsk", decoder="ml"), r"^decoder: .*allowed for qpsk: app, maxlog"),
    (dict(name="hamming74", decoder="app"), r"^decoder: .*allowed for hamming74: ml, hard"),
    (dict(name="ldpc5g", decoder="ml"), r"^decoder: .*allowed for ldpc5g: bp"),
    (dict(name="qam64", block_length=1024), r"^block_length: .*multiple of 6"),
    (dict(name="hamming74", block_length=7), r"^block_length: .*multiple of 4"),
    (dict(name="ldpc5g", block_length=10), r"^block_length: .*12 <= k <= 8448"),
    (dict(name="ldpc5g", block_length=0), r"^block_length: "),
    (dict(name="ldpc5g", block_length=101, bits_per_symbol=4), r"^block_length: n=202 .*multiple of 4"),
    (dict(name="bpsk", coderate=0.5), r"^codec: "),
])
def test_make_codec_errors(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ConfigError, match=match):
        make_codec(name, **kwargs)


def test_make_codec_options():
    c = make_codec("ldpc5g", block_length=256, bits_per_symbol=4, coderate=2 / 3, decoder="bp")
    assert (c.k, c.n, c.bits_per_symbol) == (256, 384, 4)
    assert c.rate == pytest.approx(256 * 4 / 384)
    h = make_codec("hamming74", block_length=12, decoder="hard")
    assert h.num_codewords == 3 and h.decoder_method == "hard"
    q = make_codec("qam16", decoder="maxlog", block_length=64)
    assert q.demapping == "maxlog" and q.num_channel_uses == 16
