"""Regressions of a hostile-user probe: huge finite numbers, counts that are not integers, unbounded work sizes,
errors that named internal keys, Ctrl-C at start-up, and API holes (bit-widths, sparsities, empty tensors,
``sample_state`` sizes, adaptation on zero pilots). Each case is refused up front with a one-line ConfigError that
names the flag or key (exit 2 on the CLI), instead of a traceback, NaN weights or a run of hours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metacomm._validation import (
    MAX_DB,
    MAX_WORK,
    ConfigError,
    check_db,
    check_nonneg_int,
    check_positive_int,
    error_message,
    reraise,
)
from metacomm.cli.main import main

torch.set_num_threads(1)

BASE_TOML = """\
name = "p"
ebno_db = 10.0
[codec]
k = 8
n = 8
[[segment]]
frames = 10
channel = "multipath"
[segment.channel_args]
num_taps = 3
"""


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------------------------------------------
# 1. huge finite numbers, non-integer counts, unbounded work sizes
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["--psr-db", "1e308"], "--psr-db"),
    (["--psr-db=-1e308"], "--psr-db"),
    (["--psr-db", "0,400"], "--psr-db"),
    (["--adv-psr-db", "1e308"], "--adv-psr-db"),
    (["--train-psr-db", "1e308"], "--train-psr-db"),
    (["--uar-psr-db", "1e308"], "--uar-psr-db"),
    (["--train-ebno-db", "1e308"], "--train-ebno-db"),
])
def test_pack_adversarial_huge_db_values_are_one_line_naming_the_flag(argv, flag, tmp_path, capsys):
    rc = main(["pack", "adversarial", "--base", str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "o"), *argv])
    line = _one_line(capsys)
    assert rc == 2 and f"error: {flag}:" in line and "300" in line, line


@pytest.mark.parametrize("flag", ["--test-blocks", "--pgd-steps", "--uap-samples", "--train-steps",
                                  "--substitute-steps", "--meta-steps", "--uar-steps"])
def test_pack_adversarial_work_sizes_beyond_the_bound_are_refused(flag, tmp_path, capsys):
    rc = main(["pack", "adversarial", "--base", str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "o"),
               flag, str(10**12)])
    line = _one_line(capsys)
    assert rc == 2 and f"error: {flag}:" in line and str(MAX_WORK) in line, line


@pytest.mark.parametrize("flag", ["--substitute-hidden", "--train-batch", "--uap-samples", "--pilots"])
def test_pack_adversarial_sizes_held_at_once_go_through_the_memory_check(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METACOMM_MEMORY_LIMIT_GB", "1")
    rc = main(["pack", "adversarial", "--base", str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "o"),
               flag, str(10**8)])
    line = _one_line(capsys)
    assert rc == 2 and f"error: {flag}:" in line and "GiB" in line, line


def _parse(text):
    from metacomm.scenarios.drift_scenarios import parse_scenario
    return parse_scenario(text, source="probe.toml")


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("ebno_db = 10.0", "ebno_db = 1e308"), "ebno_db"),
    (lambda t: t.replace('channel = "multipath"', 'channel = "multipath"\nebno_db = -1e308'),
     "segment[0].ebno_db"),
    (lambda t: t + '[segment.attack]\nkind = "jam-gauss"\npsr_db = 1e308\n', "segment[0].attack.psr_db"),
    (lambda t: t + '[segment.snr]\nwalk = { step_db = 0.5, min_db = -1e308, max_db = 1e308 }\n',
     "segment[0].snr.walk.min_db"),
    (lambda t: t + '[segment.snr]\ndeep_fades = { rate_per_frame = 0.1, depth_db = 1e308, duration_frames = 2 }\n',
     "segment[0].snr.deep_fades.depth_db"),
    (lambda t: t + '[segment.impairment]\nkind = "rapp"\n[segment.impairment.params]\ninput_backoff_db = 1e308\n',
     "segment[0].impairment.params.input_backoff_db"),
    (lambda t: t.replace("num_taps = 3", "num_taps = 1e5"), "segment[0].channel_args.num_taps"),
    (lambda t: t.replace("num_taps = 3", "num_taps = true"), "segment[0].channel_args.num_taps"),
    (lambda t: t.replace("num_taps = 3", "num_taps = 2.5"), "segment[0].channel_args.num_taps"),
    (lambda t: t.replace("frames = 10", "frames = 1000000000000"), "segment[0].frames"),
])
def test_drift_scenario_files_refuse_huge_values_naming_file_and_key(edit, key):
    with pytest.raises(ConfigError) as e:
        _parse(edit(BASE_TOML))
    assert e.value.field.startswith("probe.toml:") and e.value.field.endswith(key), str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_a_huge_tap_count_is_refused_at_once_not_after_minutes():
    import time
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="num_taps"):
        _parse(BASE_TOML.replace("num_taps = 3", "num_taps = 1e9"))
    assert time.perf_counter() - t0 < 5.0


def test_library_db_conversions_refuse_values_that_would_overflow():
    from metacomm.channels import attacks as A
    from metacomm.channels.drift import Segment, SNRRandomWalk, Timeline
    from metacomm.channels.fading import RayleighBlockFading, RicianBlockFading
    from metacomm.channels.impairments import RappPA, SalehPA
    from metacomm.channels.multipath import exponential_pdp
    from metacomm.channels.units import db_to_lin, ebnodb_to_esnodb, ebnodb_to_no, esnodb_to_no
    cases = [
        ("psr_db", lambda: A.psr_linear(1e308)),
        ("psr_db", lambda: A.SegmentAttack("fgm", 1e308)),
        ("psr_db", lambda: A.budget(torch.ones(2, 3, dtype=torch.complex64), 1e308)),
        ("ebno_db", lambda: ebnodb_to_no(1e308, 2)),
        ("ebno_db", lambda: ebnodb_to_no(-1e308, 1.5)),
        ("esno_db", lambda: esnodb_to_no(-1e308)),
        ("ebno_db", lambda: ebnodb_to_esnodb(1e308, 2)),
        ("x_db", lambda: db_to_lin(1e308)),
        ("k_factor_db", lambda: RicianBlockFading(k_factor_db=1e308)),
        ("input_backoff_db", lambda: RappPA(input_backoff_db=1e308)),
        ("input_backoff_db", lambda: SalehPA(input_backoff_db=-1e308)),
        ("decay_db_per_tap", lambda: exponential_pdp(3, 1e308)),
        ("max_db", lambda: SNRRandomWalk(0.1, 0.0, 1e308)),
        ("ebno_db", lambda: Segment(frames=3, channel=RayleighBlockFading(), ebno_db=1e308)),
        ("ebno_db", lambda: Timeline([Segment(frames=3, channel=RayleighBlockFading())], ebno_db=1e308,
                                     bits_per_channel_use=1.0)),
    ]
    for field, fn in cases:
        with pytest.raises(ConfigError) as e:
            fn()
        assert e.value.field == field, (field, str(e.value))
    # the bound itself is a physical range, and both ends are allowed
    assert A.psr_linear(-MAX_DB) > 0 and math.isfinite(ebnodb_to_no(MAX_DB, 2))


def test_integer_checks_refuse_booleans_fractions_and_non_finite_and_bound_work():
    for bad in (True, False, np.bool_(True), 2.5, float("inf"), float("nan"), "1e9", None, torch.tensor(3.0)):
        with pytest.raises(ConfigError, match="expected an integer"):
            check_positive_int("num_taps", bad)
        with pytest.raises(ConfigError, match="expected an integer"):
            check_nonneg_int("seed", bad)
    for ok in (3, 3.0, np.int64(3), torch.tensor(3), "3"):
        assert check_positive_int("num_taps", ok) == 3
    assert check_positive_int("test_blocks", MAX_WORK, maximum=MAX_WORK) == MAX_WORK
    with pytest.raises(ConfigError) as e:
        check_positive_int("test_blocks", 10**12, maximum=MAX_WORK)
    assert e.value.field == "test_blocks" and str(MAX_WORK) in str(e.value)
    assert check_db("snr_db", -MAX_DB) == -MAX_DB
    for bad in (1e308, -1e308, MAX_DB * 1.0001, float("nan"), float("inf"), "x"):
        with pytest.raises(ConfigError):
            check_db("snr_db", bad)


@pytest.mark.parametrize("name, config, field", [
    ("fading-ae", {"hidden": 10**9}, "hidden"),
    ("fading-ae", {"n": 10**9, "num_taps": 1}, "hidden"),  # the model's size: reduce hidden, n, k
    ("fading-ae", {"k": 40}, "k"),
    ("fading-ae", {"num_train_channels": 10**12}, "num_train_channels"),
    ("fading-ae", {"hidden": True}, "hidden"),
    ("fading-ae", {"channel_seed": 1.5}, "channel_seed"),
    ("fading-ae", {"ebno_db": 1e308}, "ebno_db"),
    ("adversarial", {"hidden": 10**9}, "hidden"),
    ("adversarial", {"k": 30}, "k"),
    ("adversarial", {"pgd_steps": 10**12}, "pgd_steps"),
    ("adversarial", {"ebno_db": 1e308}, "ebno_db"),
    ("adversarial", {"train_psr_db": "1e308"}, "train_psr_db"),
    ("iq-demod", {"hidden": [10**9, 10**9]}, "hidden"),
    ("iq-demod", {"num_train_devices": 10**12}, "num_train_devices"),
    ("iq-demod", {"snr_db": 1e308}, "snr_db"),
    ("iq-demod", {"test_seed": 2.5}, "test_seed"),
    ("drift", {"hidden": 10**9}, "hidden"),
    ("drift", {"num_taps": 10**9}, "num_taps"),
    ("drift", {"test_frames": 10**12}, "test_frames"),
    ("drift", {"ebno_db": 1e308}, "ebno_db"),
])
def test_scenario_configs_check_sizes_before_any_allocation(name, config, field, monkeypatch):
    from metacomm.scenarios import make_scenario
    monkeypatch.setenv("METACOMM_MEMORY_LIMIT_GB", "4")
    with pytest.raises(ConfigError) as e:
        make_scenario(name, **config)
    assert e.value.field == field, str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# 2. errors name the key the user gave; Ctrl-C at start-up
# ---------------------------------------------------------------------------------------------------------------

def test_meta_train_unknown_drift_names_the_flag_once(tmp_path, capsys):
    rc = main(["meta-train", "--scenario", "drift", "--drift", "nope", "--out", str(tmp_path / "m.pt")])
    line = _one_line(capsys)
    assert rc == 2 and "error: --drift: unknown scenario 'nope'" in line and "scenario: unknown" not in line, line


def test_a_drift_file_error_keeps_the_file_and_key_under_the_drift_key(tmp_path):
    from metacomm.scenarios import make_scenario
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE_TOML.replace("ebno_db = 10.0", "ebno_db = 1e308"))
    with pytest.raises(ConfigError) as e:
        make_scenario("drift", drift=str(bad))
    assert e.value.field == "drift" and "bad.toml:2: ebno_db: must lie in" in str(e.value)
    assert str(e.value).count("drift:") == 1


def test_reraise_strips_the_inner_prefix_and_keeps_the_inner_key():
    inner = ConfigError("lr", "must be > 0, got -1")
    assert str(reraise("checkpoint", inner)) == "checkpoint: lr: must be > 0, got -1"
    assert str(reraise("checkpoint", inner, inner=False)) == "checkpoint: must be > 0, got -1"
    assert str(reraise("lr", inner)) == "lr: must be > 0, got -1"  # never a doubled prefix
    assert str(reraise("base", inner, prefix="checkpoint config ")) == "base: checkpoint config lr: must be > 0, got -1"
    assert error_message(inner) == "must be > 0, got -1" and error_message(ValueError("x")) == "x"


def test_ctrl_c_while_building_the_parsers_is_one_line_exit_130(monkeypatch, capsys):
    import metacomm.cli.main as cli

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["ber", "--help"]) == 130
    assert "interrupted" in _one_line(capsys)


def test_ctrl_c_while_importing_a_subcommand_is_one_line_exit_130(monkeypatch, capsys):
    import importlib

    import metacomm.cli.main as cli
    real = importlib.import_module

    def slow_import(name, *a, **k):
        if name.startswith("metacomm.cli.commands."):
            raise KeyboardInterrupt
        return real(name, *a, **k)
    monkeypatch.setattr(importlib, "import_module", slow_import)  # the subcommands are imported through it
    assert cli.main(["ber"]) == 130
    assert "interrupted" in _one_line(capsys)


# ---------------------------------------------------------------------------------------------------------------
# 3. API holes
# ---------------------------------------------------------------------------------------------------------------

def test_quantisation_refuses_bad_bit_widths_sparsities_and_empty_tensors():
    from metacomm.codecs.quantization import (
        fake_quant_weight,
        magnitude_mask,
        model_bytes,
        prune,
        quantize_adc,
        quantize_uniform,
        quantize_weight,
    )
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    for bits in (0, -1, 2.5, float("nan"), float("inf"), True, torch.tensor(float("nan")), torch.tensor(0.0),
                 torch.tensor([4.0, 0.0])):
        for fn in (lambda b: quantize_weight(w, b), lambda b: fake_quant_weight(w, b),
                   lambda b: model_bytes({"decoder.net.0.weight": w}, b)):
            with pytest.raises(ConfigError) as e:
                fn(bits)
            assert e.value.field == "bits", (bits, str(e.value))
    for bits in (-1, 2.5, float("nan"), torch.tensor(float("nan"))):
        with pytest.raises(ConfigError, match="bits"):
            quantize_uniform(w, bits, 1.0)
        with pytest.raises(ConfigError, match="bits"):
            quantize_adc(torch.randn(3, dtype=torch.complex64), bits, 1.0)
    with pytest.raises(ConfigError, match="clip"):
        quantize_uniform(w, 4, float("nan"))
    for s in (1.5, 1.0, -0.1, float("nan"), torch.tensor(1.5)):
        with pytest.raises(ConfigError) as e:
            prune(w, s)
        assert e.value.field == "sparsity"
        with pytest.raises(ConfigError):
            magnitude_mask(w, s)
        with pytest.raises(ConfigError):
            model_bytes({"decoder.net.0.weight": w}, 4, s if not isinstance(s, torch.Tensor) else 1.5)
    for shape in ((0,), (0, 3), (3, 0)):
        with pytest.raises(ConfigError) as e:
            quantize_weight(torch.zeros(shape), 4)
        assert e.value.field == "w"
    # what stays allowed: 1..16 bits, float (32), 0 = ADC off, 0-d weights keep their shape, vmap over bit-widths
    assert torch.equal(quantize_weight(w, 32), w) and quantize_weight(torch.tensor(0.5), 4).shape == ()
    assert torch.equal(quantize_adc(w, 0, 1.0), w)
    out = torch.vmap(lambda b: quantize_weight(w, b))(torch.tensor([1.0, 4.0, 32.0]))
    assert out.shape == (3, 4, 3) and torch.isfinite(out).all()


def test_quantized_decoder_refuses_zero_bits():
    from metacomm.experiments.export import quantized_decoder
    from metacomm.scenarios import make_scenario
    model = make_scenario("fading-ae").build_model(0)
    with pytest.raises(ConfigError, match="bits"):
        quantized_decoder(model, 0)


def _all_channels():
    from metacomm.channels.registry import CHANNEL_NAMES, make_channel
    args = {"phase-noise": {"variance": 0.01}, "phase-offset": {"random": True}}
    return [(name, make_channel(name, **args.get(name, {}))) for name in CHANNEL_NAMES]


def test_every_channel_sample_state_refuses_bad_sizes_through_one_check():
    for name, ch in _all_channels():
        for b, n, field in ((4, -1, "num_symbols"), (-1, 4, "batch_size"), (True, 4, "batch_size"),
                            (2.5, 4, "batch_size"), (4, 3.5, "num_symbols"), (4, float("inf"), "num_symbols")):
            with pytest.raises(ConfigError) as e:
                ch.sample_state(b, n, generator=torch.Generator().manual_seed(0))
            assert e.value.field == field, (name, b, n, str(e.value))
        st = ch.sample_state(np.int64(2), 4, generator=torch.Generator().manual_seed(0))  # numpy ints are counts
        assert all(v.shape[0] == 2 for v in st.values()), name


def test_sample_state_sizes_go_through_the_memory_check(monkeypatch):
    monkeypatch.setenv("METACOMM_MEMORY_LIMIT_GB", "1")
    from metacomm.channels.multipath import MultipathBlockFading
    with pytest.raises(ConfigError) as e:
        MultipathBlockFading(num_taps=3).sample_state(10**12, 8, generator=torch.Generator().manual_seed(0))
    assert e.value.field == "batch_size" and "GiB" in str(e.value)


def test_adaptive_codec_does_not_adapt_on_zero_pilots_and_says_so():
    from metacomm.adaptation.online import AdaptiveCodec
    from metacomm.scenarios.online_drift import DriftAutoencoder
    m = DriftAutoencoder(k=4, n=4, num_taps=2, hidden=8)
    m.reset_parameters(torch.Generator().manual_seed(0))
    for policy in ("every-frame", "on-detection", "reset-on-change", "online-meta"):
        ac = AdaptiveCodec(m, num_links=2, adapt="decoder.taps", steps=2, lr=0.1, policy=policy, loss="ce")
        before = {k: v.clone() for k, v in ac.fast.items()}
        det_before = repr(vars(ac.detector)) if ac.detector is not None else None
        out = ac.observe(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 0, 4, dtype=torch.complex64))
        assert out["adapted"].tolist() == [False, False], policy
        assert out["pilot_loss"] is None and out["fired"] is None
        assert all(torch.equal(before[k], ac.fast[k]) for k in before), policy
        if det_before is not None:
            assert repr(vars(ac.detector)) == det_before, policy
        # a frame with pilots afterwards adapts as usual
        g = torch.Generator().manual_seed(1)
        msg = torch.randint(0, 16, (2, 6), generator=g)
        y = torch.complex(torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g))
        out = ac.observe(msg, y)
        assert torch.isfinite(out["pilot_loss"]).all() if out["pilot_loss"] is not None else True


def test_step_lists_with_inf_or_booleans_are_one_line():
    """``steps = [0, inf]`` in a file used to be an OverflowError (int(inf)) inside int_list."""
    from metacomm._validation import ConfigError
    from metacomm.experiments._common import int_list
    for bad in ([0, float("inf")], [True], [1.5], [float("nan")]):
        with pytest.raises(ConfigError, match="^steps: expected a list of integers"):
            int_list("steps", bad, minimum=0)
    assert int_list("steps", [2.0, 1], minimum=0) == [1, 2]


def test_a_checkpoint_whose_scenario_settings_are_bad_names_the_flag(tmp_path, capsys):
    """A meta checkpoint whose stored scenario settings fail validation: the error names --checkpoint, with the
    inner key in the message (not the inner key in place of the flag)."""
    from metacomm.artefacts import load_checkpoint, save_checkpoint
    from metacomm.cli.main import main
    src = tmp_path / "m.pt"
    assert main(["meta-train", "--scenario", "fading-ae", "--meta-steps", "2", "--joint-steps", "0", "--val-every",
                 "2", "--val-tasks", "2", "--restarts", "1", "--set", "num_train_channels=4", "--set",
                 "num_test_channels=2", "--quiet", "--out", str(src)]) == 0
    ck = load_checkpoint(src, kinds="metacomm-meta", field="checkpoint")
    ck["scenario_config"]["k"] = -3
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {k: v for k, v in ck.items() if k not in ("format", "kind")}, kind="metacomm-meta")
    capsys.readouterr()
    assert main(["fewshot", "--checkpoint", str(bad), "--out", str(tmp_path / "fs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metacomm fewshot: error: --checkpoint: ") and "k: " in err[0], err


def test_ber_refuses_a_huge_ebno_before_any_point_runs(tmp_path, capsys):
    from metacomm.cli.main import main
    out = tmp_path / "b"
    assert main(["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0,1e308", "--max-blocks", "10",
                 "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ebno-db" in err[0] and "300" in err[0], err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", [["fewshot", "--checkpoint", "x.pt"],
                                     ["pack", "label-noise", "--base", "scratch"],
                                     ["pack", "compression", "--base", "x.pt"]])
def test_test_blocks_beyond_the_work_bound_are_refused(tmp_path, capsys, command):
    from metacomm.cli.main import main
    assert main([*command, "--test-blocks", str(10 ** 12), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--test-blocks" in err[0], err


def test_ber_out_with_a_fifo_results_file_is_refused_not_blocked(tmp_path, capsys):
    import os
    import threading

    from metacomm.cli.main import main
    out = tmp_path / "b"
    out.mkdir()
    os.mkfifo(out / "results.json")
    done = {}
    t = threading.Thread(target=lambda: done.setdefault("rc", main(
        ["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0", "--max-blocks", "10", "--quiet", "--out",
         str(out)])), daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # unblock the reader so the test process can end, then fail
        with open(out / "results.json", "w"):
            pass
        pytest.fail("ber --out blocked on a FIFO results.json")
    assert done["rc"] == 2
    assert "--out" in capsys.readouterr().err


def test_a_setting_of_another_scenario_says_whose_it_is(tmp_path, capsys):
    """`meta-train --scenario fading-ae --drift X` used to print "--drift: not a fading-ae setting; allowed: ...":
    now it says which scenario takes the setting."""
    from metacomm.cli.main import main
    assert main(["meta-train", "--scenario", "fading-ae", "--drift", "doppler-slow", "--out",
                 str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metacomm meta-train: error: --drift: scenario 'fading-ae' has no "
                                               "setting 'drift' (a setting of scenario drift)"), err
