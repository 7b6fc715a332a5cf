"""An attacker switched on for a drift segment ([segment.attack]): no attacker / PSR = -inf dB is exactly today's run,
an active attacker perturbs the received signals of every scheme alike (common random numbers) at exactly its PSR,
and bad attack settings are one-line errors naming file, line and key."""

from __future__ import annotations

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels.attacks import psr_db_of
from metacomm.drift.run import run_drift
from metacomm.scenarios.drift_scenarios import parse_scenario
from metacomm.scenarios.online_drift import DriftAutoencoder

torch.set_num_threads(1)

BASE = """
name = "atk"
ebno_db = 10.0
seed = 3
[codec]
k = 8
n = 8
[[segment]]
frames = 2
channel = "multipath"
[segment.channel_args]
num_taps = 3
[segment.drift]
process = "gauss-markov"
rho = 0.9
[[segment]]
frames = 2
channel = "multipath"
[segment.channel_args]
num_taps = 3
{attack}
"""


def _model():
    m = DriftAutoencoder(k=8, n=8, num_taps=3, hidden=16)
    m.reset_parameters(torch.Generator().manual_seed(0))
    return m


def _counts(res):
    """Every frame record without the wall-clock latencies."""
    return [{**f, "schemes": {n: {k: v for k, v in r.items() if k != "latency_ms"} for n, r in f["schemes"].items()}}
            for f in res.to_dict()["frames"]]


def _run(attack: str, store=None):
    sc = parse_scenario(BASE.format(attack=attack))
    hook = None
    if store is not None:
        def hook(frame, sig):
            store.append((frame, {k: v.clone() for k, v in sig.items()}))
    return run_drift(sc, _model(), frames=4, pilots=4, links=2, payload=16,
                     schemes=["static", "meta", "pilot-ls", "genie"], seed=5, on_frame=hook)


@pytest.mark.parametrize("off", ["", '[segment.attack]\nkind = "pgd-l2"\npsr_db = -inf',
                                 '[segment.attack]\nkind = "none"\npsr_db = -6.0'])
def test_no_attacker_equals_todays_run_exactly(off):
    today, other = [], []
    a = _run("", today)
    b = _run(off, other)
    assert _counts(a) == _counts(b)
    for (_, sa), (_, sb) in zip(today, other, strict=True):
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("kind", ["jam-gauss", "pgd-l2", "uap"])
def test_an_attacker_perturbs_only_its_segment_at_exactly_its_psr(kind):
    clean, att = [], []
    _run("", clean)
    res = _run(f'[segment.attack]\nkind = "{kind}"\npsr_db = -6.0', att)
    for t, ((_, c), (frame, a)) in enumerate(zip(clean, att, strict=True)):
        assert torch.equal(c["msg_d"], a["msg_d"])  # the run's own draws are untouched
        if t < 2:
            assert torch.equal(c["y_d"], a["y_d"]) and frame.attack is None
        else:
            p = a["y_d"] - c["y_d"]
            x = _model().encoder.codebook()[a["msg_d"]]  # transmitted payload blocks [B, N, n]
            got = psr_db_of(p.reshape(-1, p.shape[-1]), x.reshape(-1, x.shape[-1]).detach())
            assert torch.allclose(got, torch.full_like(got, -6.0), atol=1e-3)
    assert res.frames[3]["schemes"]["genie"]["blocks"] == 32


@pytest.mark.parametrize("attack, where", [
    ('[segment.attack]\nkind = "laser"\npsr_db = -6.0', "segment[1].attack.kind"),
    ('[segment.attack]\nkind = "fgm"\npsr_db = nan', "segment[1].attack.psr_db"),
    ('[segment.attack]\nkind = "fgm"\npsr_db = inf', "segment[1].attack.psr_db"),
    ('[segment.attack]\nkind = "fgm"', "segment[1].attack.psr_db"),
    ('[segment.attack]\nkind = "fgm"\npsr_db = -6.0\nsteps = 3', "segment[1].attack.steps"),
])
def test_bad_attack_settings_name_file_line_and_key(attack, where):
    with pytest.raises(ConfigError) as e:
        parse_scenario(BASE.format(attack=attack), source="x.toml")
    assert where in e.value.field and e.value.field.startswith("x.toml:")


def test_defended_and_undefended_schemes_run_side_by_side_on_the_same_attacked_draws():
    sc = parse_scenario(BASE.format(attack='[segment.attack]\nkind = "pgd-l2"\npsr_db = -10.0'))
    res = run_drift(sc, _model(), frames=4, pilots=4, links=2, payload=16, seed=5,
                    schemes=["static", "meta", "meta-adv", "genie"])
    assert res.schemes[:4] == ["static", "meta", "meta-adv", "genie"]  # + the genie's yardsticks
    for f in res.frames:
        assert all(f["schemes"][s]["blocks"] == 32 for s in res.schemes)


def test_a_white_box_attack_never_helps_the_decoder_it_is_crafted_against():
    """The drift attacker (`attack_frame`) crafted against a decision function -- here the exact ML detector of the
    shipped codebook on AWGN, logits -||y - c_m||^2 / N0 -- never lowers that detector's block errors on the same
    draws, block by block (a perturbation that helped its own target would be a sign error in the attack); for
    every other receiver of a drift run it is a transfer attack (next test)."""
    from metacomm.channels.attacks import SegmentAttack, attack_frame
    from metacomm.channels.base import complex_normal
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT, load_drift_codec
    model, _, _ = load_drift_codec(DEFAULT_CHECKPOINT)
    with torch.no_grad():
        book = model.encoder.codebook()  # [256, 8], Es = 1
    g = torch.Generator().manual_seed(11)
    B, P, no = 4, 64, 0.4
    msg = torch.randint(0, book.shape[0], (B, P), generator=g)
    x = book[msg]
    y = x + no ** 0.5 * complex_normal(x.shape, generator=g)

    def logits(yy):
        return -(yy[:, None, :] - book[None]).abs().square().sum(-1) / no

    def errors(yy):
        return logits(yy.reshape(-1, yy.shape[-1])).argmax(-1).reshape(B, P) != msg
    clean = errors(y)
    assert 0 < int(clean.sum()) < B * P // 2  # a working detector, not saturated
    for kind in ("pgd-l2", "fgm", "pgd-linf"):
        (y_att,) = attack_frame(SegmentAttack(kind, -8.0), logits, [(x, y, msg)], torch.Generator().manual_seed(5))
        hit = errors(y_att)
        assert bool((hit | ~clean).all()), kind  # no block the clean detector got wrong is decided right
        assert int(hit.sum()) > int(clean.sum()), kind


def test_a_drift_run_with_a_white_box_attacker_reports_equal_power_jamming_beside_it(tmp_path, capsys):
    """The CLI labels the attack a transfer attack and runs the same frames with Gaussian jamming of equal power;
    the twin's frames outside the attacked segment equal the main run's (same draws)."""
    import json

    from metacomm.cli.main import main
    f = tmp_path / "atk.toml"
    f.write_text(BASE.format(attack='[segment.attack]\nkind = "pgd-l2"\npsr_db = -6.0'))
    assert main(["drift", "--scenario", str(f), "--frames", "4", "--pilots", "4", "--links", "2", "--payload", "16",
                 "--schemes", "meta,pilot-ls,genie", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Gaussian jamming of equal power" in out
    cfg = json.loads((tmp_path / "o" / "results.json").read_text())["config"]
    assert cfg["attack_model"].startswith("transfer attack")
    twin = cfg["jamming_twin"]
    assert set(twin["summary"]) == {"meta", "pilot-ls", "genie", "genie-1dB"}
    assert set(twin["segments"]) == {"0", "1"}
    # the clean segment is the same frames in both runs
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    seg0 = {s: sum(fr["schemes"][s]["block_errors"] for fr in doc["frames"][:2]) / sum(
        fr["schemes"][s]["blocks"] for fr in doc["frames"][:2]) for s in twin["summary"]}
    assert seg0 == pytest.approx(twin["segments"]["0"], abs=0)
