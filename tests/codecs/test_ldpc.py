"""5G NR LDPC codec: error-free decoding at high SNR, coding gain, parameter validation."""

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import AWGN, make_generator
from metacomm.codecs.base import CodecLink
from metacomm.codecs.ldpc import LDPC5G

torch.set_num_threads(1)


@pytest.mark.parametrize("m", [2, 4])
def test_error_free_at_high_snr(m, device):
    codec = LDPC5G(256, 512, m, device=device)
    assert codec.num_channel_uses == 512 // m
    assert codec.rate == pytest.approx(0.5 * m)
    g = make_generator(4, device)
    bits, bits_hat = CodecLink(codec, AWGN())(40, 8.0, g)
    assert bits.shape == (40, 256) and bits.device.type == torch.device(device).type
    assert torch.equal(bits, bits_hat)
    x = codec.encoder(bits)
    assert x.shape == (40, 512 // m)
    assert (x.abs() ** 2).mean().item() == pytest.approx(1.0, abs=0.1)


def test_decoder_corrects_channel_errors():
    """QPSK + rate-1/2 LDPC at Eb/N0 = 2.5 dB: Es/N0 = Eb/N0 * 1 (rate 1/2 x 2 bits), so the raw QPSK bit
    error probability into the decoder is Q(sqrt(Es/N0)) ~ 0.05; the decoded BER must be far below it."""
    codec = LDPC5G(512, 1024, 2)
    g = make_generator(8)
    bits, bits_hat = CodecLink(codec, AWGN())(60, 2.5, g)
    esno = 10 ** (2.5 / 10) * codec.rate
    raw = 0.5 * math.erfc(math.sqrt(esno / 2))
    assert raw > 0.04
    assert (bits != bits_hat).double().mean().item() < 2e-3


def test_soft_output_is_logits():
    codec = LDPC5G(64, 128, 2)
    g = make_generator(1)
    bits = torch.randint(0, 2, (10, 64), generator=g).float()
    llr = codec.decoder(codec.encoder(bits), 0.05)
    assert llr.shape == (10, 64) and llr.dtype == torch.float32
    assert torch.equal((llr > 0).float(), bits)  # logits ln P(1)/P(0): positive for bit 1


@pytest.mark.parametrize("k,n,match", [
    (8, 16, r"k=8 .*12 <= k <= 8448"),
    (9000, 18000, r"k=9000 .*12 <= k <= 8448"),
    (100, 101, r"code rate .*1/5 <= k/n <= 0.95"),
    (100, 1000, r"code rate .*1/5 <= k/n <= 0.95"),
    (100, 201, r"n=201 is not a multiple of 2"),
])
def test_bad_block_lengths(k, n, match):
    with pytest.raises(ConfigError, match=match):
        LDPC5G(k, n, 2)


def test_bad_other_arguments():
    with pytest.raises(ConfigError, match="bits_per_symbol"):
        LDPC5G(100, 200, 3)
    with pytest.raises(ConfigError, match="num_iter"):
        LDPC5G(100, 200, 2, num_iter=0)
    with pytest.raises(ConfigError, match="demapping"):
        LDPC5G(100, 200, 2, demapping="exact")


def test_encoder_and_decoder_share_no_module():
    codec = LDPC5G(100, 200, 2)
    assert not list(codec.parameters())
    enc = {id(mod) for mod in codec.encoder.modules()}
    dec = {id(mod) for mod in codec.decoder.modules()}
    assert not enc & dec
