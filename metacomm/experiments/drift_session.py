"""One seed's drift run as the command plays it: the scenario and the codec loaded once
(:class:`DriftSession`), the run played with periodic run states and resume (:meth:`DriftSession.play`), the
finished run saved (:func:`save_run`). :mod:`metacomm.experiments.drift` drives one seed or many through it.

Files of a run directory: ``results.json`` / ``results.csv`` / ``drift.png`` (a finished run), ``run-state.pt``
(:data:`RUN_STATE`, kind :data:`RUN_KIND`: frames played, their records, every scheme's state, ``finished``
False until the end; loaded with ``torch.load(weights_only=True)``). A many-seed run writes one such directory per
seed, ``OUT/seed-<s>/`` (:func:`seed_dir`), and the pooled ``OUT/results.json`` (kind :data:`SEEDS_KIND`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from metacomm._validation import ConfigError, check_positive_int
from metacomm.scenarios.drift_builtins import builtin_match, builtin_scenario_text, scenario_text

__all__ = ["jamming_twin", "TRANSFER_NOTE", "RUN_STATE", "RUN_KIND", "SEEDS_KIND", "DEFAULT_CHECKPOINT", "CodecSettings", "DriftSession",
           "load_drift_codec", "shipped_tracker", "builtin_match", "check_drift_memory", "save_run", "fingerprint", "read_run_state",
           "seed_dir", "check_seeds_output", "is_ofdm", "drift_link"]

#: the run-state file a drift run with ``save_every`` writes into its output directory
RUN_STATE = "run-state.pt"
RUN_KIND = "metacomm-drift-run"
#: the kind of the pooled results.json of a many-seed run
SEEDS_KIND = "metacomm-drift-seeds"

#: the shipped online-drift meta checkpoint (k = 8 bits on n = 8 complex uses, 3-tap channel belief)
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints", "online_drift_k8n8.pt")


@dataclass
class CodecSettings:
    """The run-time settings a drift checkpoint implies for the adaptive schemes: the inner rate, the adapted
    parameters, the pilot loss and the inner update rule it was meta-trained with (an
    :class:`~metacomm.adaptation.update_rules.UpdateRule`: ``SGD(inner_lr)`` for an online-drift checkpoint and a
    ``maml``/``fomaml``/``reptile``/``anil`` one, ``MetaSGD`` with the learned rates for a ``metasgd`` one -- the
    checkpoint's rule entry, :func:`~metacomm.experiments.meta_init.load_meta_init`). The drift run hands it to
    its schemes (``ctx.rule``): each uses it or refuses it (:class:`~metacomm.drift.schemes.adaptive.AdaptiveScheme`);
    ``None``: plain SGD at the run's ``lr``."""

    inner_lr: float
    adapt: str
    inner_loss: str
    rule: object = None


def load_drift_codec(path: str, *, device="cpu", field: str = "checkpoint"):
    """The codec of a drift checkpoint: ``(model on device, CodecSettings, checkpoint dict)``. Accepts an
    online-drift checkpoint (:func:`metacomm.scenarios.online_drift.save_meta`; its rule is ``SGD(inner_lr)``) or a
    finished ``meta-train --scenario drift`` checkpoint (its selected initialisation: a
    :class:`~metacomm.scenarios.drift_track.TrackingDriftCodec` with the meta-learned tracker, scheme ``track``;
    its rule the checkpoint's, :func:`~metacomm.experiments.meta_init.load_meta_init`); ConfigError naming
    ``field`` for anything else."""
    from metacomm.adaptation.update_rules import SGD
    from metacomm.artefacts import load_checkpoint
    from metacomm.experiments.meta_train import KIND as META_KIND
    from metacomm.scenarios.online_drift import load_meta

    ck = load_checkpoint(path, kinds=("metacomm-online-meta", META_KIND), field=field, allow_partial=True)
    if not str(ck.get("kind", "")).startswith(META_KIND + "/"):
        model, mcfg, ck = load_meta(path, device=device, field=field)
        return model, CodecSettings(mcfg.inner_lr, mcfg.adapt, mcfg.inner_loss, SGD(float(mcfg.inner_lr))), ck
    if ck.get("scenario") != "drift":
        raise ConfigError(field, f"{path}: a meta-train checkpoint of scenario {ck.get('scenario')!r}; a drift run "
                                 "takes one of `meta-train --scenario drift` or an online-drift checkpoint")
    from metacomm.experiments.meta_init import load_meta_init
    mi = load_meta_init(path, device=device, field=field)
    model, ck = mi.model, mi.checkpoint
    inner_lr = float(ck.get("meta_config", {}).get("inner_lr", 0.1))
    init = ck.get("init") or {}
    ck = {**ck, "meta": {"scenario": "drift", "scenario_config": ck.get("scenario_config"),
                         "init_step": init.get("step"), "init_seed": init.get("seed"), "val": init.get("val"),
                         "meta_steps": ck.get("meta_steps"), "inner_rule": mi.rule.spec_name}}
    return model, CodecSettings(inner_lr, "decoder.taps", model.meta_inner_loss, mi.rule), ck


def sha256_of(data: bytes | str) -> str:
    """Hex SHA-256 of ``data`` (text as UTF-8)."""
    import hashlib
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file at ``path`` (a checkpoint: what a resumed run must be run with)."""
    with open(path, "rb") as f:
        return sha256_of(f.read())


def shipped_tracker(scenario, pilots) -> str | None:
    """The shipped meta-learned tracking codec for drift scenario ``scenario`` (a built-in name, or a file with a
    built-in's exact content: :func:`builtin_match`) and ``pilots`` pilots per frame
    (``metacomm/checkpoints/drift_track_<builtin>_p<pilots>.pt``), or None."""
    name = builtin_match(scenario)
    if name is None:
        return None
    path = os.path.join(os.path.dirname(DEFAULT_CHECKPOINT), f"drift_track_{name}_p{pilots}.pt")
    return path if os.path.exists(path) else None


def is_ofdm(scenario) -> bool:
    """Whether ``scenario`` (a loaded drift scenario) plays slots of coded OFDM links."""
    return getattr(scenario, "link_kind", "block") == "ofdm"


def drift_link(scenario):
    """The :class:`~metacomm.drift.protocol.DriftLink` that plays ``scenario``'s frames (None: the block link)."""
    if is_ofdm(scenario):
        from metacomm.drift.ofdm_link import OFDMSlotLink
        return OFDMSlotLink()
    return None


def check_drift_memory(cfg) -> None:
    """Refuse up front sizes whose tensors cannot fit: per frame the links' pilot and payload blocks with every
    scheme's working set (codewords, noise, received samples, 2^k block logits and their temporaries), and a record
    per frame and scheme in the result (about 512 bytes).

    Per block (measured peak RSS growth for the k = 8 built-ins, doppler-fast, 250 -> 2000 links, 16 + 64 blocks per
    link, with the fused score-and-decide kernel: 2.09 KiB with pilot-ls, 2.97 KiB with the genie, 3.04 KiB with the
    tracker; 2.94 KiB for the tracker at 250 -> 10^4 links): 3.5 KiB for every scheme (estimate / measured 1.19 for
    track at 10^4 links, 1.18 genie, 1.68 pilot-ls; ``benchmarks/drift_memory.py``)."""
    from metacomm._validation import check_memory
    for f in ("links", "pilots", "payload"):
        if getattr(cfg, f, None) is not None:
            setattr(cfg, f, check_positive_int(f, getattr(cfg, f)))
    blocks = (getattr(cfg, "links", None) or 8) * ((getattr(cfg, "pilots", None) or 16)
                                                  + (getattr(cfg, "payload", None) or 64))
    schemes = cfg.schemes if isinstance(getattr(cfg, "schemes", None), list | tuple) else ()
    per_block = 3.5 * 1024
    sizes = sorted(("payload", "pilots", "links"), key=lambda f: -(getattr(cfg, f, None) or 0))  # largest first
    check_memory(tuple(sizes), per_block * blocks, "one frame of pilot and payload blocks")
    check_memory("frames", 512.0 * cfg.frames * (len(schemes) or 16), "the per-frame results")


def seed_dir(out: str, seed: int) -> str:
    """``out/seed-<seed>``: where seed ``seed`` of a multi-seed run is written."""
    return os.path.join(out, f"seed-{seed}")


def check_seeds_output(cfg) -> None:
    """Before any work: the pooled directory and every seed's directory may be written (never a foreign file or
    a single run's results in the pooled directory), ``resume`` has something to resume, ``save_every`` is asked
    of the local executor only."""
    from metacomm.artefacts import check_output_dir
    from metacomm.experiments._common import check_out_dir
    check_output_dir(cfg.out, results="results.json", kind=SEEDS_KIND, field="out", others=("seeds.png",))
    for s in cfg.seeds:
        check_output_dir(seed_dir(cfg.out, s), results="results.json", kind="metacomm-drift", field="out",
                         others=("results.csv", "drift.png", "belief.png"))
    if cfg.save_every and cfg.executor != "local":
        raise ConfigError("save_every", "periodic run states are written by the local executor only (a remote "
                                        "task returns a whole seed; a resumed run recomputes the unfinished seeds)")
    if cfg.resume and not os.path.exists(os.path.join(cfg.out, "results.json")):
        raise ConfigError("resume", f"nothing to resume: no {os.path.join(cfg.out, 'results.json')} (a multi-seed "
                                    "run writes it when it starts)")
    check_out_dir(cfg.out)


def save_run(res, out: str, checkpoint: str, ck: dict, digests: dict | None = None):
    """Write a finished run into ``out``: ``results.json`` (with the checkpoint's path, meta data and the contents'
    ``digests`` -- ``scenario_sha256``, ``checkpoint_sha256`` -- in its config), ``results.csv`` and ``drift.png``;
    returns the three paths."""
    from metacomm.drift.result import plot_drift
    res.config["checkpoint"] = None if checkpoint is None else os.path.abspath(checkpoint)
    res.config["checkpoint_meta"] = ck.get("meta", {})
    res.config.update(digests or {})
    os.makedirs(out, exist_ok=True)
    pj, pc = res.save(out)
    png = plot_drift(res, os.path.join(out, "drift.png"))
    from metacomm.drift.result import plot_belief
    plot_belief(res, os.path.join(out, "belief.png"))  # only when a scheme reports its estimates (OFDM adaptive)
    return pj, pc, png


#: DriftConfig keys that do not change a run's numbers (where and how it executes, where it writes)
_NOT_SETTINGS = ("out", "progress", "resume", "save_every", "seeds", "executor", "ray_address", "num_gpus")


def fingerprint(cfg) -> dict:
    """The settings a resumed run must share with the interrupted one (where the run executes is not one)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_SETTINGS}


def read_run_state(path: str, fp: dict) -> dict:
    """The saved run state at ``path``; ConfigError naming ``resume`` when it was made with other settings."""
    from metacomm.artefacts import load_checkpoint
    state = load_checkpoint(path, kinds=RUN_KIND, field="resume", allow_partial=True)
    if state.get("settings") != fp:
        diff = sorted(k for k in set(fp) | set(state.get("settings", {}))
                      if fp.get(k) != state.get("settings", {}).get(k))
        raise ConfigError("resume", f"the saved run {path} was made with other settings ({', '.join(diff)}); resume "
                                    "with the settings of the interrupted run")
    return state


#: what a drift run's white-box attack is (recorded in results.json as ``attack_model``)
TRANSFER_NOTE = ("transfer attack: white-box kinds (fgm, pgd-*, uap*) are crafted once per frame against the "
                 "meta-initialisation's decoder (the codec the run loads, unadapted), and every scheme decides the same "
                 "attacked signals -- for the adapted, classical and genie receivers it is a transfer attack, which "
                 "can be weaker than jamming; 'jamming_twin' reports the same run with Gaussian jamming of equal "
                 "power (same PSR) in its place")


def jamming_twin(scenario):
    """The scenario with every white-box / universal attack replaced by Gaussian jamming of equal power (``jam-gauss``
    at the same PSR per block), or ``None`` when it has none. Its attacker draws from the attacker's own generator,
    so the twin run has the same channels, messages and noise."""
    from metacomm.channels.attacks import JAMMERS, SegmentAttack
    from metacomm.channels.drift import Timeline
    if is_ofdm(scenario):
        return None
    segs = scenario.timeline.segments
    if not any(s.attack is not None and s.attack.kind not in JAMMERS for s in segs):
        return None
    twin = [dataclasses.replace(s, attack=SegmentAttack("jam-gauss", s.attack.psr_db))
            if s.attack is not None and s.attack.kind not in JAMMERS else s for s in segs]
    tl = scenario.timeline
    return dataclasses.replace(scenario, timeline=Timeline(twin, ebno_db=tl.ebno_db,
                                                           bits_per_channel_use=tl.bits_per_channel_use, plot=tl.plot))


@dataclass
class DriftSession:
    """What every seed of a drift command shares, loaded once: the scenario (parsed once), the codec and its
    settings, the checkpoint dict and the device. A remote worker rebuilds it from :meth:`ref`."""

    scenario: object
    model: object
    codec: CodecSettings
    ck: dict
    device: object
    checkpoint: str
    #: SHA-256 of the scenario's TOML text and of the checkpoint file: what a resumed run is checked against (a
    #: path alone would accept an edited scenario file or a replaced checkpoint)
    digests: dict = dataclasses.field(default_factory=dict)
    #: how the checkpoint was chosen when none was given (recorded in results.json as ``checkpoint_choice``)
    choice: str | None = None

    def recorded(self) -> dict:
        """What a finished run's results.json config records about its inputs: the digests and the choice."""
        return {**self.digests, **({"checkpoint_choice": self.choice} if self.choice else {})}

    @classmethod
    def open(cls, scenario, checkpoint: str, device, *, text: str | None = None) -> DriftSession:
        """Load ``checkpoint`` (ConfigError ``checkpoint``) for ``scenario`` (a loaded DriftScenario; ``text``: its
        TOML text, read from its source when not given) and check that the codec fits the scenario's geometry
        (ConfigError ``checkpoint``)."""
        from metacomm.drift.links import check_codec_fits
        if is_ofdm(scenario):  # slots of coded OFDM links: the classical receivers need no codec
            if checkpoint is not None:
                raise ConfigError("checkpoint", f"scenario {scenario.name!r} is an OFDM drift scenario, whose "
                                                "receivers (ls-nn, ls-lin, lmmse-cov, perfect-csi) take no "
                                                "checkpoint; leave it out")
            model, settings, ck, digest_ck = None, CodecSettings(0.1, "none", "ce", None), {}, None
        else:
            digest_ck = file_sha256(checkpoint) if os.path.isfile(checkpoint) else None
            model, settings, ck = load_drift_codec(checkpoint, device=device)
            check_codec_fits(scenario, model, field="checkpoint")
        if text is None:
            src = str(scenario.source)
            text = builtin_scenario_text(src[len("<builtin>/"):-len(".toml")]) if src.startswith("<builtin>/") \
                else scenario_text(src)
        digests = {"scenario_sha256": None if text is None else sha256_of(text), "checkpoint_sha256": digest_ck}
        return cls(scenario, model, settings, ck, device, checkpoint, digests)

    def fingerprint(self, cfg) -> dict:
        """:func:`fingerprint` of ``cfg`` plus the contents' digests (:attr:`digests`)."""
        return {**fingerprint(cfg), **self.digests}

    def ref(self) -> tuple:
        """What a worker needs to rebuild the session (no shared file system): the scenario as a built-in's name
        or a file's text, the checkpoint's absolute path."""
        sc = self.scenario
        src = str(sc.source)
        if src.startswith("<builtin>/"):
            scen = ("name", sc.name)
        else:
            from pathlib import Path
            scen = ("text", Path(src).read_text(encoding="utf-8"), src, sc.name)
        return scen, None if self.checkpoint is None else os.path.abspath(self.checkpoint)

    @classmethod
    def from_ref(cls, ref: tuple, device: str) -> DriftSession:
        """The session of :meth:`ref`, rebuilt on a worker exactly as the driver built it."""
        from metacomm.scenarios.drift_scenarios import load_scenario, parse_scenario
        from metacomm.sims.engine import resolve_device
        (scen, checkpoint) = ref
        dev = resolve_device(device, field="device")
        if scen[0] == "name":
            return cls.open(load_scenario(scen[1]), checkpoint, dev)
        return cls.open(parse_scenario(scen[1], source=scen[2], default_name=scen[3]), checkpoint, dev, text=scen[1])

    def scheme_list(self, schemes) -> tuple[list[str], dict]:
        """``schemes`` (``None``: the defaults of this scenario and codec, :func:`default_schemes`) -> ``(names,
        settings from the NAME[key=value] items)``; ConfigError ``schemes``."""
        from metacomm.drift.registry import default_schemes, parse_schemes
        return parse_schemes(default_schemes(self.scenario, self.model) if schemes is None else schemes,
                             "schemes")

    def run_config(self, cfg):
        """The :class:`~metacomm.drift.run.DriftRunConfig` of the single-seed run ``cfg`` (its ``schemes`` already
        resolved to a list): run-level keys, plus the retrain scheme's ``every`` / ``steps`` from
        ``retrain_every`` / ``retrain_steps``."""
        from metacomm.drift.run import DriftRunConfig
        names, settings = self.scheme_list(cfg.schemes)
        if "retrain" in names:
            settings["retrain"] = {"every": cfg.retrain_every, "steps": cfg.retrain_steps, **settings.get("retrain", {})}
        return DriftRunConfig(
            frames=cfg.frames, pilots=cfg.pilots, steps=cfg.steps, schemes=names, scheme_settings=settings,
            links=cfg.links, payload=cfg.payload, seed=self.scenario.seed if cfg.seed is None else cfg.seed,
            device=self.device, lr=self.codec.inner_lr if cfg.lr is None else cfg.lr, adapt=self.codec.adapt,
            inner_loss=self.codec.inner_loss, bler_target=cfg.bler_target)

    def play(self, cfg, *, state: dict | None = None):
        """Play the run ``cfg`` frame by frame; every ``save_every`` frames write the run state (:data:`RUN_STATE`
        in ``cfg.out``), and with ``resume`` continue from it (the played frames' draws are replayed, so the result
        equals an uninterrupted run's). ``state``: a run state already read (and checked) by the caller, resumed
        instead of reading the file (a task of a multi-seed run). Returns the DriftResult."""
        from tqdm.auto import tqdm

        from metacomm.artefacts import save_checkpoint
        from metacomm.drift.run import DriftRun
        run = DriftRun(self.scenario, self.model, self.run_config(cfg), rule=self.codec.rule, link=drift_link(
            self.scenario))
        path = None if cfg.out is None else os.path.join(cfg.out, RUN_STATE)
        fp = self.fingerprint(cfg)
        if state is not None:
            run.load_state_dict(state["run"])
        elif cfg.resume:
            run.load_state_dict(read_run_state(path, fp)["run"])
        elif cfg.save_every:
            for s in run.schemes:  # refuse up front a scheme whose state cannot be saved
                s.state_dict()
        every = cfg.save_every
        left = cfg.frames - run.position
        desc = f"drift {self.scenario.name}" + (f" seed {cfg.seed}" if cfg.seed is not None else "")
        with tqdm(total=left, disable=not cfg.progress, desc=desc, leave=False) as bar:
            while not run.done:
                run.step()
                bar.update(1)
                if every and (run.position % every == 0 or run.done):
                    save_checkpoint(path, {"settings": fp, "run": run.state_dict(), "finished": run.done},
                                    kind=RUN_KIND, field="out")
        return run.result
