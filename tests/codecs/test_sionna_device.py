"""metacomm._sionna: Sionna blocks are built for the device of the data (one helper), never moved.

CPU checks: the cache semantics, Sionna blocks out of state_dict/parameters, copies, device validation.
CUDA checks (marked ``cuda``, skipped without a GPU): every codec that wraps Sionna blocks runs on CUDA --
built there, moved there with ``.to()``, or built on the CPU and fed CUDA tensors -- without device-mismatch
errors, returns CUDA tensors, and agrees with the same computation on the CPU.
"""

import copy

import pytest
import torch

from metacomm import ConfigError
from metacomm._sionna import SionnaBlocks, device_string, sionna_device
from metacomm.channels import make_generator
from metacomm.channels.awgn import AWGN
from metacomm.codecs.base import random_bits
from metacomm.codecs.constellation import TrainableConstellation
from metacomm.codecs.hamming import Hamming74
from metacomm.codecs.ldpc import LDPC5G
from metacomm.codecs.neural_rx import NeuralReceiver
from metacomm.codecs.qam import UncodedQAM

CUDA = torch.cuda.is_available()


def test_cache_builds_once_per_device_and_key():
    calls = []

    def factory(*key, device):
        calls.append((key, device))
        return object()

    blocks = SionnaBlocks(factory)
    assert calls == [] and blocks.default_device == "cpu"
    a = blocks.get(torch.device("cpu"))
    assert blocks.get("cpu") is a and blocks.get() is a and calls == [((), "cpu")]
    b = blocks.get(torch.device("cpu"), 16, "double")
    assert b is not a and blocks.get("cpu", 16, "double") is b and calls[-1] == ((16, "double"), "cpu")
    assert blocks.devices() == ["cpu"] and len(calls) == 2
    eager = SionnaBlocks(factory, device="cpu")
    assert calls[-1] == ((), "cpu") and len(calls) == 3 and eager.get() is not a


def test_device_validation():
    assert sionna_device(None) == "cpu" and sionna_device("cpu") == "cpu" == device_string(torch.device("cpu"))
    for bad in ("tpu", "gpu:0", 3.5):
        with pytest.raises(ConfigError, match="^device: "):
            sionna_device(bad)
    with pytest.raises(ConfigError, match="allowed: cpu, cuda"):
        sionna_device("meta")
    if not CUDA:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            UncodedQAM(2, 4, device="cuda")


def test_sionna_blocks_are_not_submodules():
    """Sionna blocks hold constants only: none of their tensors is in state_dict(), buffers() or parameters()."""
    for codec in (UncodedQAM(4, 8), LDPC5G(64, 128), Hamming74()):
        assert not any(type(m).__module__.startswith("sionna") for m in codec.modules())
        assert list(codec.parameters()) == []
        assert not any(k.startswith("encoder") for k in codec.state_dict())
    tc = TrainableConstellation(4, 8, demapper="app")
    assert sorted(tc.state_dict()) == ["encoder.points_i", "encoder.points_r"]


def test_deepcopy_is_independent_and_equal():
    tc = TrainableConstellation(4, 8, demapper="app")
    tc2 = copy.deepcopy(tc)
    with torch.no_grad():
        tc2.encoder.points_r.mul_(2.0).add_(0.1)
    g = make_generator(0)
    bits = random_bits(4, 32, generator=g)
    y = AWGN()(tc.encoder(bits), 0.1, generator=g)
    before = tc.decoder(y, 0.1)
    tc2.decoder(y, 0.1)  # uses its own Sionna blocks with its own points
    torch.testing.assert_close(tc.decoder(y, 0.1), before, rtol=0, atol=0)
    assert not torch.equal(tc2.decoder(y, 0.1), before)


def _cpu_and_cuda_codecs():
    return {
        "qam16-built-on-cuda": lambda dev: UncodedQAM(4, 16, device=dev),
        "qpsk-built-on-cpu": lambda dev: UncodedQAM(2, 16),
        "ldpc": lambda dev: LDPC5G(64, 128, 2, num_iter=5, device=dev),
        "ldpc-built-on-cpu": lambda dev: LDPC5G(64, 128, 2, num_iter=5),
        "hamming-ml": lambda dev: Hamming74(num_codewords=4, device=dev),
        "constellation-neural": lambda dev: TrainableConstellation(4, 8).to(dev),
        "constellation-app": lambda dev: TrainableConstellation(4, 8, demapper="app").to(dev),
        "neural-rx": lambda dev: NeuralReceiver(2, 8, 4, 3).to(dev),
        "neural-rx-net": lambda dev: NeuralReceiver(2, 8, 4, 3, architecture="net", hidden=8,
                                                    num_hidden_layers=1).to(dev),
    }


@pytest.mark.parametrize("name", list(_cpu_and_cuda_codecs()))
@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_codec_runs_on_cuda_and_matches_cpu(name):
    make = _cpu_and_cuda_codecs()[name]
    torch.manual_seed(0)
    cpu = make("cpu")
    torch.manual_seed(0)
    gpu = make("cuda")
    gpu.load_state_dict(cpu.state_dict())
    g = make_generator(5)
    bits = random_bits(64, cpu.num_info_bits, generator=g)
    x = cpu.encoder(bits)
    x_gpu = gpu.encoder(bits.cuda())
    assert x_gpu.device.type == "cuda"
    torch.testing.assert_close(x_gpu.cpu(), x)
    no = torch.full((64,), 0.05)
    y = x + (0.05 ** 0.5) * torch.complex(*torch.randn(2, *x.shape, generator=g)) / 2 ** 0.5
    llr = cpu.decoder(y, no)
    llr_gpu = gpu.decoder(y.cuda(), no.cuda())
    assert llr_gpu.device.type == "cuda"
    # float32 on another device (TF32 convolutions, BP iterations): close, not bit-identical
    torch.testing.assert_close(llr_gpu.cpu(), llr, rtol=1e-2, atol=1e-2)
    decided = gpu.decide(y.cuda(), no.cuda())
    assert decided.device.type == "cuda"
    assert torch.equal(decided.cpu(), cpu.decide(y, no))


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_neural_receiver_encoder_has_no_cpu_round_trip():
    rx = NeuralReceiver(2, 8, 4, 3).cuda()
    bits = torch.randint(0, 2, (16, 16), device="cuda").float()
    frame = rx.encoder(bits)
    assert frame.device.type == "cuda"
    assert rx.encoder.mapper._mappers.devices() == ["cpu", device_string("cuda")]  # built once on CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_tdl_channel_on_cuda():
    from metacomm.channels.tdl import TDL

    ch = TDL("A", 30e-9)
    g = make_generator(1, "cuda")
    x = torch.ones(8, 32, dtype=torch.complex64, device="cuda")
    y = ch(x, 0.1, generator=g)
    assert y.device.type == "cuda" and y.shape == (8, 32 + ch.num_taps - 1)
