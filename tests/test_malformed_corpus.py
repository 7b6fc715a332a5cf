"""A corpus of malformed experiment files and command lines across every subcommand.

For each case: exit code 2, exactly one line on stderr naming the flag or key, no traceback, and the results of
an earlier run in the output directory (copied there before the call) byte-identical afterwards, with no new file.
Related, not repeated here: `test_experiment_files.py` (TOML syntax, unknown keys, choices), `test_huge_sizes.py`
(sizes over the memory budget), `test_checkpoint_safety.py` (crafted pickles)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from metacomm.cli.main import main

CKPTS = Path(__file__).resolve().parents[1] / "metacomm" / "checkpoints"
DRIFT_CKPT = CKPTS / "drift_track_doppler-slow_p2.pt"
ONLINE_CKPT = CKPTS / "online_drift_k8n8.pt"


def _main(argv) -> int:
    threads = torch.get_num_threads()
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        return e.code
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    """Artefacts of earlier, successful runs (small), and malformed files to feed the commands."""
    d = tmp_path_factory.mktemp("prior")
    ok = [
        ["ber", "--codec", "qpsk", "--channel", "awgn", "--ebno-db", "0,2", "--max-blocks", "200", "--quiet",
         "--out", d / "ber"],
        ["drift", "--scenario", "doppler-slow", "--frames", "2", "--links", "1", "--payload", "4", "--pilots", "2",
         "--schemes", "static,pilot-ls", "--quiet", "--save-every", "1", "--out", d / "drift"],
        ["train", "--codec", "constellation", "--bits-per-symbol", "2", "--train-ebno-db", "5", "--steps", "2",
         "--batch-size", "64", "--quiet", "--out", d / "const.pt"],
        ["train", "--codec", "ae", "--n", "7", "--k", "4", "--train-ebno-db", "5", "--steps", "2", "--batch-size",
         "64", "--quiet", "--out", d / "ae.pt"],
        ["meta-train", "--scenario", "fading-ae", "--meta-steps", "2", "--joint-steps", "0", "--restarts", "1",
         "--meta-batch", "2", "--val-every", "0", "--quiet", "--out", d / "fading.pt"],
        ["meta-train", "--scenario", "iq-demod", "--meta-steps", "2", "--joint-steps", "0", "--restarts", "1",
         "--meta-batch", "2", "--val-every", "0", "--quiet", "--out", d / "iq.pt"],
    ]
    for argv in ok:
        assert _main(argv) == 0, argv
    # results of the other kinds: tagged files as an earlier run leaves them (the output check reads the tag)
    for name, kind in [("fewshot", "metacomm-fewshot/1"), ("compression", "metacomm-compression/1"),
                       ("label-noise", "metacomm-label-noise/1"), ("adversarial", "metacomm-adversarial/1")]:
        (d / name).mkdir()
        (d / name / "results.json").write_text(json.dumps({"format": kind, "config": {}, "results": []}) + "\n")
        (d / name / "notes.txt").write_text("earlier run\n")
    shutil.copytree(d / "drift", d / "demo")
    files = d / "files"
    files.mkdir()
    (files / "empty.pt").write_bytes(b"")
    (files / "results.json").write_bytes((d / "ber" / "results.json").read_bytes())
    (files / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (files / "latin1.json").write_bytes('{"format": "metacomm-results/1", "caf\xe9": 1}'.encode("latin-1"))
    (files / "array.json").write_text("[1, 2, 3]\n")
    full = (d / "fading.pt").read_bytes()
    (files / "truncated.pt").write_bytes(full[: len(full) // 2])
    (files / "dangling.json").symlink_to(files / "no-such-target.json")
    (files / "dir.pt").mkdir()
    (files / "nul.toml").write_bytes(b'command = "ber"\x00\x00\ncodec = "qpsk"\n')
    return d


def _toml(text: str):
    return ("toml", text)


# (id, command line, where the earlier results live, the flag or key the one error line must name)
# {P} = the prior directory, {OUT} = the output directory (prepared from the given prior results), {F} = files
CASES = [
    # ber
    ("ber-negative-block-length", "ber --codec qpsk --channel awgn --ebno-db 0 --block-length -8 --out {OUT}",
     "ber", "--block-length"),
    ("ber-nan-ebno", "ber --codec qpsk --channel awgn --ebno-db nan --out {OUT}", "ber", "--ebno-db"),
    ("ber-inf-in-list", "ber --codec qpsk --channel awgn --ebno-db 0,inf,3 --out {OUT}", "ber", "--ebno-db"),
    ("ber-float-batch", "ber --codec qpsk --channel awgn --ebno-db 0 --batch-size 1e30 --out {OUT}", "ber",
     "--batch-size"),
    ("ber-seed-text", "ber --codec qpsk --channel awgn --ebno-db 0 --seed abc --out {OUT}", "ber", "--seed"),
    ("ber-negative-seed", "ber --codec qpsk --channel awgn --ebno-db 0 --seed -1 --out {OUT}", "ber", "--seed"),
    ("ber-out-is-a-file", "ber --codec qpsk --channel awgn --ebno-db 0 --out {OUT}/results.json", "ber", "--out"),
    ("ber-out-not-writable", "ber --codec qpsk --channel awgn --ebno-db 0 --out /proc/metacomm-out", None, "--out"),
    ("ber-other-codec-ckpt", "ber --codec ae --channel awgn --ebno-db 0 --checkpoint {P}/const.pt --out {OUT}",
     "ber", "--checkpoint"),
    ("ber-empty-ckpt", "ber --codec ae --channel awgn --ebno-db 0 --checkpoint {F}/empty.pt --out {OUT}", "ber",
     "--checkpoint"),
    ("ber-json-ckpt", "ber --codec ae --channel awgn --ebno-db 0 --checkpoint {F}/results.json --out {OUT}", "ber",
     "--checkpoint"),
    ("ber-dir-ckpt", "ber --codec ae --channel awgn --ebno-db 0 --checkpoint {F}/dir.pt --out {OUT}", "ber",
     "--checkpoint"),
    ("ber-compare-binary", "ber --codec qpsk --channel awgn --ebno-db 0 --compare {F}/binary.bin --out {OUT}",
     "ber", "--compare"),
    ("ber-compare-latin1", "ber --codec qpsk --channel awgn --ebno-db 0 --compare {F}/latin1.json --out {OUT}",
     "ber", "--compare"),
    ("ber-resume-other-sweep", "ber --codec bpsk --channel awgn --ebno-db 0,2 --max-blocks 200 --resume --quiet "
     "--out {OUT}", "ber", "--resume"),
    # train
    ("train-nan-lr", "train --codec ae --n 7 --k 4 --train-ebno-db 5 --lr nan --out {OUT}/new.pt", "ber", "--lr"),
    ("train-negative-n", "train --codec ae --n -7 --k 4 --train-ebno-db 5 --out {OUT}/new.pt", "ber", "--n"),
    ("train-inf-ebno", "train --codec ae --n 7 --k 4 --train-ebno-db inf --out {OUT}/new.pt", "ber",
     "--train-ebno-db"),
    ("train-float-steps", "train --codec ae --n 7 --k 4 --train-ebno-db 5 --steps 2.5 --out {OUT}/new.pt", "ber",
     "--steps"),
    ("train-out-not-writable", "train --codec ae --n 7 --k 4 --train-ebno-db 5 --steps 1 --out /proc/mc/ae.pt",
     None, "--out"),
    ("train-out-is-a-dir", "train --codec ae --n 7 --k 4 --train-ebno-db 5 --steps 1 --out {OUT}", "ber", "--out"),
    # meta-train
    ("meta-resume-other-scenario", "meta-train --scenario fading-ae --meta-steps 4 --resume {P}/iq.pt "
     "--out {OUT}/new.pt", "ber", "--resume"),
    ("meta-resume-empty", "meta-train --scenario fading-ae --resume {F}/empty.pt --out {OUT}/new.pt", "ber",
     "--resume"),
    ("meta-resume-json", "meta-train --scenario fading-ae --resume {F}/results.json --out {OUT}/new.pt", "ber",
     "--resume"),
    ("meta-resume-truncated", "meta-train --scenario fading-ae --resume {F}/truncated.pt --out {OUT}/new.pt", "ber",
     "--resume"),
    ("meta-set-nan-hidden", "meta-train --scenario fading-ae --set hidden=nan --out {OUT}/new.pt", "ber", "hidden"),
    ("meta-out-not-writable", "meta-train --scenario fading-ae --meta-steps 1 --out /proc/mc/m.pt", None, "--out"),
    ("meta-zero-batch", "meta-train --scenario fading-ae --meta-batch 0 --out {OUT}/new.pt", "ber", "--meta-batch"),
    # fewshot
    ("fewshot-drift-ckpt", "fewshot --checkpoint {ONLINE} --out {OUT}", "fewshot", "--checkpoint"),
    ("fewshot-truncated-ckpt", "fewshot --checkpoint {F}/truncated.pt --out {OUT}", "fewshot", "--checkpoint"),
    ("fewshot-pilots-text", "fewshot --checkpoint {P}/fading.pt --pilots 1,x --out {OUT}", "fewshot", "--pilots"),
    ("fewshot-negative-blocks", "fewshot --checkpoint {P}/fading.pt --test-blocks -5 --out {OUT}", "fewshot",
     "--test-blocks"),
    # drift
    ("drift-meta-ckpt", "drift --scenario doppler-slow --checkpoint {P}/fading.pt --out {OUT}", "drift",
     "--checkpoint"),
    ("drift-out-not-writable", "drift --scenario doppler-slow --frames 1 --out /proc/mc", None, "--out"),
    ("drift-nan-lr", "drift --scenario doppler-slow --lr nan --out {OUT}", "drift", "--lr"),
    ("drift-bler-target-above-1", "drift --scenario doppler-slow --bler-target 1.5 --out {OUT}", "drift",
     "--bler-target"),
    ("drift-unknown-scheme", "drift --scenario doppler-slow --schemes static,bogus --out {OUT}", "drift",
     "--schemes"),
    ("drift-resume-other-settings", "drift --scenario doppler-slow --frames 3 --links 1 --payload 4 --pilots 2 "
     "--schemes static,pilot-ls --save-every 1 --resume --quiet --out {OUT}", "drift", "--resume"),
    # demo
    ("demo-negative-frames", "demo --frames -3 --out {OUT}", "demo", "--frames"),
    ("demo-unknown-scenario", "demo --scenario nope --out {OUT}", "demo", "--scenario"),
    ("demo-empty-ckpt", "demo --checkpoint {F}/empty.pt --out {OUT}", "demo", "--checkpoint"),
    # plot
    ("plot-binary-results", "plot {F}/binary.bin --out {OUT}/fig.png", "ber", "RESULTS"),
    ("plot-latin1-results", "plot {F}/latin1.json --out {OUT}/fig.png", "ber", "RESULTS"),
    ("plot-array-results", "plot {F}/array.json --out {OUT}/fig.png", "ber", "RESULTS"),
    ("plot-dangling-link", "plot {F}/dangling.json --out {OUT}/fig.png", "ber", "RESULTS"),
    ("plot-bad-suffix", "plot {P}/ber --out {OUT}/fig.txt", "ber", "--out"),
    ("plot-zero-window", "plot {P}/drift --window 0 --out {OUT}/fig.png", "drift", "--window"),
    # run (experiment files)
    ("run-nul-bytes", "run {F}/nul.toml", None, "EXPERIMENT.toml"),
    ("run-negative-block-length", _toml('command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0"\n'
                                        'block_length = -8\nout = "{OUT}"\n'), "ber", "block_length"),
    ("run-huge-int", _toml('command = "ber"\ncodec = "qpsk"\nchannel = "awgn"\nebno_db = "0"\n'
                           'block_length = 100000000000000000000000000000\nout = "{OUT}"\n'), "ber", "block_length"),
    ("run-rate-above-1", _toml('command = "pack label-noise"\nbase = "scratch"\nrate = "0,1.5"\nout = "{OUT}"\n'),
     "label-noise", "rate"),
    ("run-inf-lr", _toml('command = "drift"\nscenario = "doppler-slow"\nlr = inf\nout = "{OUT}"\n'), "drift", "lr"),
    ("run-list-for-int", _toml('command = "drift"\nscenario = "doppler-slow"\nframes = [3]\nout = "{OUT}"\n'),
     "drift", "frames"),
    # pack
    ("pack-compression-zero-bits", "pack compression --base {P}/fading.pt --bits 0,4 --out {OUT}", "compression",
     "--bits"),
    ("pack-compression-sparsity-1", "pack compression --base {P}/fading.pt --sparsity 1.0 --out {OUT}",
     "compression", "--sparsity"),
    ("pack-compression-other-scenario", "pack compression --base {P}/iq.pt --bits 4 --sparsity 0 --out {OUT}",
     "compression", "--base"),
    ("pack-label-noise-rate", "pack label-noise --base scratch --rate 0,1.5 --out {OUT}", "label-noise", "--rate"),
    ("pack-label-noise-json-base", "pack label-noise --base {F}/results.json --out {OUT}", "label-noise", "--base"),
    ("pack-adversarial-empty-base", "pack adversarial --base {F}/empty.pt --out {OUT}", "adversarial", "--base"),
    ("pack-adversarial-nan-psr", "pack adversarial --base {P}/ae.pt --psr-db nan --out {OUT}", "adversarial",
     "--psr-db"),
    # export
    ("export-other-scenario", "export --checkpoint {P}/iq.pt --out {OUT}/codec.onnx", "ber", "--checkpoint"),
    ("export-zero-bits", "export --checkpoint {P}/fading.pt --bits 0 --out {OUT}/codec.onnx", "ber", "--bits"),
    ("export-nan-sparsity", "export --checkpoint {P}/fading.pt --sparsity nan --out {OUT}/codec.onnx", "ber",
     "--sparsity"),
    ("export-unknown-format", "export --checkpoint {P}/fading.pt --format tflite --out {OUT}/codec.onnx", "ber",
     "--format"),
    ("export-out-not-writable", "export --checkpoint {P}/fading.pt --out /proc/mc/codec.onnx", None, "--out"),
    ("export-out-is-a-dir", "export --checkpoint {P}/fading.pt --out {OUT}", "ber", "--out"),
]


#: what else the line must say (the diagnosis, not only the flag)
EXTRA = {"ber-json-ckpt": "a JSON file", "meta-resume-json": "a JSON file", "pack-label-noise-json-base": "a JSON file",
         "ber-empty-ckpt": "an empty file", "ber-out-not-writable": "not a writable directory",
         "train-out-not-writable": "not a writable directory", "meta-out-not-writable": "not a writable directory",
         "drift-out-not-writable": "not a writable directory", "export-out-not-writable": "not a writable directory",
         "export-out-is-a-dir": "codec.onnx", "meta-resume-other-scenario": "scenario",
         "ber-other-codec-ckpt": "expected a Autoencoder", "fewshot-drift-ckpt": "online-drift"}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if not p.is_symlink()}


def test_the_corpus_is_large_and_covers_every_subcommand():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
    commands = {(c[1].split()[0] if isinstance(c[1], str) else "run") for c in CASES}
    assert commands == {"ber", "train", "meta-train", "fewshot", "drift", "demo", "plot", "run", "pack", "export"}


@pytest.mark.parametrize("name,line,earlier,flag", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_one_line_exit_2_and_leaves_earlier_results_alone(name, line, earlier, flag, prior,
                                                                             tmp_path, capsys):
    out = tmp_path / "out"
    if earlier:
        shutil.copytree(prior / earlier, out)
    else:
        out.mkdir()
    subst = {"{P}": str(prior), "{F}": str(prior / "files"), "{OUT}": str(out), "{ONLINE}": str(ONLINE_CKPT),
             "{DRIFTCK}": str(DRIFT_CKPT)}
    if isinstance(line, tuple):
        text = line[1]
        for k, v in subst.items():
            text = text.replace(k, v)
        exp = tmp_path / "exp.toml"
        exp.write_text(text)
        argv = ["run", str(exp)]
    else:
        argv = line.split()
        for i, a in enumerate(argv):
            for k, v in subst.items():
                a = a.replace(k, v)
            argv[i] = a
    before = _snapshot(out)
    capsys.readouterr()
    rc = _main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert flag in err[0], (flag, err[0])
    if name in EXTRA:
        assert EXTRA[name] in err[0], (EXTRA[name], err[0])
    assert _snapshot(out) == before  # earlier results byte-identical, nothing new (no temporary file either)
