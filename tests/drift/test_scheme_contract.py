"""The drift-scheme contract, run over the registry (as the scenario contract test runs over the scenario registry):
for every registered scheme, `decide` returns int64 decisions of the payload's shape; its state round-trips
through a saved run state (``torch.load(weights_only=True)``) so that a resumed run equals the uninterrupted one;
and registering an extra scheme -- defined here, outside the package, drawing from torch's global generator --
leaves the scheme's numbers unchanged (common random numbers). A new scheme is tested by registering it."""

from __future__ import annotations

import io
import os

import pytest
import torch

from metacomm.drift import registry
from metacomm.drift.protocol import Decision, DriftScheme
from metacomm.drift.registry import register_scheme, scheme_names
from metacomm.drift.run import DriftRun, DriftRunConfig
from metacomm.experiments.drift import DEFAULT_CHECKPOINT, load_drift_codec, shipped_tracker
from metacomm.scenarios.drift_scenarios import load_scenario

torch.set_num_threads(1)

#: what a scheme needs to run, when it is not the default (doppler-fast, the online-drift codec, 4 pilots):
#: (scenario, checkpoint: "online" or "tracker" -- the shipped tracker of that scenario and pilot count --, pilots)
NEEDS = {"track": ("pa-drift", "tracker", 16), "track-linear": ("pa-drift", "tracker", 16),
         "track-pa-adapt": ("pa-drift", "tracker", 16), "pa-ls": ("pa-drift", "online", 4),
         "pa-kalman": ("pa-drift", "online", 4), "pn-ls": ("phase-noise-drift", "online", 4),
         "pn-kalman": ("phase-noise-drift", "online", 4), "dd-mwnet": ("doppler-slow", "tracker", 1)}
FRAMES, HALF = 4, 2
#: the OFDM link's schemes run on a tiny OFDM drift scenario (32 subcarriers, QPSK, LDPC n = 648)
TINY_OFDM = """
kind = "ofdm"
link = "tdl-b-400hz"
ebno_db = 4.0
[link_overrides]
fft_size = 32
num_guard_carriers = [2, 2]
bits_per_symbol = 2
num_bp_iter = 5
[[segment]]
slots = 4
speed = { ramp = [10.0, 30.0] }
"""


def _is_ofdm(name):
    return registry.scheme_entry(name).cls.links == ("ofdm",)


def _setting(name):
    if _is_ofdm(name):
        from metacomm.scenarios.drift_scenarios import parse_scenario
        return parse_scenario(TINY_OFDM, default_name="tiny-ofdm"), None, dict(frames=FRAMES, links=2, seed=1)
    scenario, ck, pilots = NEEDS.get(name, ("doppler-fast", "online", 4))
    path = shipped_tracker(scenario, pilots) if ck == "tracker" else DEFAULT_CHECKPOINT
    model, codec, _ = load_drift_codec(path)
    return load_scenario(scenario), model, dict(frames=FRAMES, pilots=pilots, links=2, payload=8, seed=1,
                                                lr=codec.inner_lr, adapt=codec.adapt, inner_loss=codec.inner_loss,
                                                steps=1)


def _numbers(result, names):
    return [{s: {k: v for k, v in f["schemes"][s].items() if k != "latency_ms"} for s in names}
            for f in result.frames]


def _rows(run):
    return [s.name for s in run.schemes]


@pytest.mark.parametrize("name", scheme_names())
def test_decide_returns_payload_shaped_int64_decisions(name):
    sc, model, kw = _setting(name)
    run = DriftRun(sc, model, DriftRunConfig(schemes=[name], **kw))
    seen = []
    for s in run.schemes:
        decide = s.decide

        def spy(sig, decide=decide):
            d = decide(sig)
            seen.append((d, tuple(sig.slot.bits.shape) if _is_ofdm(name) else tuple(sig.msg_d.shape)))
            return d
        s.decide = spy
    run.run()
    assert len(seen) == FRAMES * len(run.schemes)
    for d, shape in seen:
        assert isinstance(d, Decision)
        if _is_ofdm(name):  # decoded information bits (0/1) of every codeword
            assert tuple(d.msg_hat.shape) == shape and set(d.msg_hat.unique().tolist()) <= {0.0, 1.0}
        else:
            assert d.msg_hat.dtype == torch.int64 and tuple(d.msg_hat.shape) == shape
            assert int(d.msg_hat.min()) >= 0 and int(d.msg_hat.max()) < 2 ** run.ctx.k
        assert d.latency_ms is None or d.latency_ms >= 0.0
    assert all(getattr(s, "kind", None) in ("adaptive", "classical", "reference") for s in run.schemes)


@pytest.mark.parametrize("name", scheme_names())
def test_state_round_trips_through_a_saved_run_state(name):
    sc, model, kw = _setting(name)
    whole = DriftRun(sc, model, DriftRunConfig(schemes=[name], **kw))
    whole.run()
    first = DriftRun(sc, model, DriftRunConfig(schemes=[name], **kw))
    for _ in range(HALF):
        first.step()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = DriftRun(sc, model, DriftRunConfig(schemes=[name], **kw))
    resumed.load_state_dict(state)
    resumed.run()
    assert _numbers(resumed.result, _rows(whole)) == _numbers(whole.result, _rows(whole))


def test_an_extra_scheme_registered_outside_the_package_changes_no_other_numbers(monkeypatch):
    """Every scheme, run alone and then next to an extra scheme that draws from torch's global generator and
    decides at random: identical numbers."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_scheme("test-random", group="pack")
    class RandomGuess(DriftScheme):
        kind = "adaptive"
        state_attrs = ()

        links = ("block", "ofdm")

        def decide(self, sig):
            torch.randn(17)  # global generator: must not be what any other scheme's numbers depend on
            if hasattr(sig, "slot"):  # an OFDM slot: random information bits
                return Decision(torch.randint(0, 2, sig.slot.bits.shape).to(sig.slot.bits.dtype), 0.0)
            return Decision(torch.randint(0, 2 ** self.ctx.k, sig.msg_d.shape), 0.0)

    assert "test-random" in scheme_names("pack")
    by_setting: dict = {}
    for name in scheme_names():
        if name != "test-random":
            key = "ofdm" if _is_ofdm(name) else NEEDS.get(name, ("doppler-fast", "online", 4))
            by_setting.setdefault(key, []).append(name)
    for names in by_setting.values():
        sc, model, kw = _setting(names[0])
        torch.manual_seed(0)
        alone = DriftRun(sc, model, DriftRunConfig(schemes=names, **kw))
        alone.run()
        torch.manual_seed(123)
        mixed = DriftRun(sc, model, DriftRunConfig(schemes=["test-random", *names], **kw))
        mixed.run()
        assert _numbers(mixed.result, _rows(alone)) == _numbers(alone.result, _rows(alone)), names


def test_every_scheme_module_is_in_one_of_the_two_lists():
    """'Adding a drift scheme' (docs/ARCHITECTURE.md): its module goes into BUILTIN_MODULES or PACK_MODULES;
    every module under metacomm/drift/schemes/ is in exactly one of them."""
    here = os.path.join(os.path.dirname(registry.__file__), "schemes")
    mods = {f"metacomm.drift.schemes.{f[:-3]}" for f in os.listdir(here) if f.endswith(".py") and f != "__init__.py"}
    listed = list(registry.BUILTIN_MODULES) + list(registry.PACK_MODULES)
    assert sorted(listed) == sorted(mods) and len(set(listed)) == len(listed)
    for name in scheme_names():
        e = registry.scheme_entry(name)
        assert (e.cls.__module__ in registry.PACK_MODULES) == (e.group == "pack"), name
