"""The main job as a library call: the adaptive codec on a fast-fading channel, next to its baselines.

:func:`run_demo` runs a drift scenario (default ``doppler-fast``: 3-tap Rayleigh multipath whose taps decorrelate
with rho = 0.5 from frame to frame, Eb/N0 10 dB, k = 8 bits on n = 8 complex channel uses, Park et al. SPAWC
2020) with the shipped meta-learned codec (meta-trained on the spot if the file is missing): every frame, 16
pilot messages per link adapt the decoder with one SGD step. Baselines on the same draws: the static codec,
retraining from scratch (a fresh decoder, 50 Adam steps on the current pilots every 20 frames -- the demo's
budget; ``metacomm drift`` defaults to 100 every 10), warm start, online meta-learning, pilot-LS + ML and the
genie, and the classical baselines of :mod:`metacomm.drift.schemes.model_based` (LMMSE with the true tap prior, a
Kalman tracker that knows rho and N0, wide-window LS, widely-linear LS). Writes ``results.json``, ``results.csv``
and ``drift.png``; logs the summary table and a verdict: the adaptive codec against the genie (within 1 dB?) and
against the best classical scheme (ratio of mean BLERs, and whether the 95 % intervals are apart).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from metacomm._log import info
from metacomm._validation import ConfigError
from metacomm.experiments.drift import DEFAULT_CHECKPOINT, DriftConfig, run_drift_experiment, shipped_tracker
from metacomm.experiments.drift_session import check_drift_memory

__all__ = ["DemoConfig", "run_demo", "ensure_checkpoint"]


@dataclass
class DemoConfig:
    """``out``: output directory; ``frames``; ``scenario``: drift scenario name or TOML file; ``checkpoint``:
    ``None`` = the shipped meta-learned tracker for the scenario and 16 pilots when there is one
    (``metacomm/checkpoints/drift_track_<scenario>_p16.pt``; its run adds the ``track`` scheme), else the shipped
    online-drift codec; or a checkpoint file; ``device``; ``progress``: progress bars."""

    out: str = "metacomm-demo"
    frames: int = 150
    scenario: str = "doppler-fast"
    checkpoint: str | None = None
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> DemoConfig:
        from metacomm._validation import check_positive_int
        from metacomm.experiments._common import check_out_dir
        self.frames = check_positive_int("frames", self.frames)
        check_drift_memory(self)
        check_out_dir(self.out)
        return self


def ensure_checkpoint(path: str, *, progress: bool = True, log: Callable[[str], None] = info) -> None:
    """Meta-train and write the demo codec at ``path`` if no file is there (about 3 minutes on a CPU core).

    Only the shipped default path is filled in this way: any other missing ``path`` is a user's typo and raises
    ConfigError(``checkpoint``) instead of starting minutes of training."""
    if os.path.exists(path):
        return
    if os.path.abspath(path) != os.path.abspath(DEFAULT_CHECKPOINT):
        raise ConfigError("checkpoint", f"{path}: no such file (only the shipped default checkpoint is trained "
                                        "on the spot when it is missing)")
    from metacomm.scenarios.online_drift import OnlineDriftConfig, meta_train, save_meta
    log(f"demo: no checkpoint at {path}; meta-training one (about 3 minutes on a CPU core) ...")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cfg = OnlineDriftConfig()
    _, model, _ = meta_train(cfg, meta_steps=2500, matched_steps=1500, seed=0, progress=progress)
    save_meta(path, model, cfg, {"meta_steps": 2500, "matched_steps": 1500, "seed": 0,
                                 "produced_by": "metacomm demo"})


def run_demo(cfg: DemoConfig, *, log: Callable[[str], None] = info) -> dict:
    """Run the demo; returns ``{"result": DriftResult, "results_json", "results_csv", "plot", "verdict",
    "vs_classical", "headline"}`` (``headline``: the adaptive scheme the verdict is about -- ``track`` when the
    tracker runs, else ``meta``; ``verdict``: ``"within"`` / ``"NOT within"`` 1 dB of the genie, or ``None``
    without it and the genie; ``vs_classical``: ``{"scheme", "bler", "ratio", "intervals_apart"}`` -- the best
    classical scheme, its BLER, the headline's BLER over it, whether their 95 % intervals are disjoint)."""
    t0 = time.perf_counter()
    cfg.validate()
    # No checkpoint given: DriftConfig picks the shipped tracker for (scenario, 16 pilots) and adds `track`; where
    # there is none, the shipped online-drift codec (trained here if its file is missing).
    checkpoint = cfg.checkpoint
    if checkpoint is None and shipped_tracker(cfg.scenario, 16) is None:
        checkpoint = DEFAULT_CHECKPOINT
    if checkpoint is not None:
        ensure_checkpoint(checkpoint, progress=cfg.progress, log=log)
    dcfg = DriftConfig(scenario=cfg.scenario, out=cfg.out, checkpoint=checkpoint, frames=cfg.frames, pilots=16,
                       steps=1, lr=None, schemes=None, links=8, payload=64, retrain_every=20, retrain_steps=50,
                       bler_target=0.1, seed=None, device=cfg.device, progress=cfg.progress)
    out = run_drift_experiment(dcfg)
    res, pj, pc, png = out.result, out.paths["results"], out.paths["csv"], out.paths["plot"]
    c = res.config
    log(f"metacomm demo: {c['scenario']}, {c['frames']} frames x {c['links']} links x "
        f"{c['payload_blocks_per_link']} blocks, k={c['k']} bits on n={c['n']} complex uses, Eb/N0 "
        f"{c['ebno_db']:g} dB; {c['pilots']} pilots and {c['steps']} step per frame\n")
    log(res.summary_table())
    s = res.summary()
    verdict = None
    vs_classical = None
    head = "track" if "track" in s else "meta"  # the headline adaptive scheme
    label = {"track": "meta-learned tracker (track)", "meta": "adapt-from-meta (16 pilots, 1 step)"}[head]
    best_cl = res.best("classical", s)
    if head in s and best_cl is not None:
        name, r = best_cl
        meta = s[head]
        apart = meta["bler_ci"][1] < r["bler_ci"][0] or r["bler_ci"][1] < meta["bler_ci"][0]
        vs_classical = {"scheme": name, "bler": r["bler"],
                        "ratio": meta["bler"] / r["bler"] if r["bler"] > 0 else float("nan"),
                        "intervals_apart": apart}
    if head in s and "genie" in s:
        nan = float("nan")
        meta, genie = s[head]["bler"], s["genie"]["bler"]
        g1 = s.get("genie-1dB", {}).get("bler", nan)
        static = s.get("static", {}).get("bler", nan)
        verdict = "within" if meta <= g1 else "NOT within"

        def times(x):  # "= 1.18 x the genie", or nothing when the genie made no error (short runs)
            return f" = {x / genie:.3g} x the genie" if genie > 0 and not math.isnan(x) else ""

        log(f"\n{label}: mean BLER {meta:.4f}{times(meta)} ({genie:.4f}); "
            f"{verdict} 1 dB of the genie (genie at Eb/N0 - 1 dB: {g1:.4f}); the static codec: "
            f"{static:.4f}{times(static)}")
    if vs_classical is not None:
        vc = vs_classical
        from metacomm.drift.result import verdict as compare
        how = compare(s[head], s[vc["scheme"]])  # "not distinguishable from" whenever the 95 % intervals overlap
        sure = "95 % intervals apart" if vc["intervals_apart"] else "95 % intervals overlap"
        ratio = "n/a" if math.isnan(vc["ratio"]) else f"{vc['ratio']:.3g} x"
        log(f"{label} vs the best classical scheme ({vc['scheme']}: {vc['bler']:.4f}): {ratio}, "
            f"{how} it ({sure})")
    log(f"demo: {time.perf_counter() - t0:.0f} s")
    return {"result": res, "results_json": pj, "results_csv": pc, "plot": png, "verdict": verdict,
            "vs_classical": vs_classical, "headline": head}
