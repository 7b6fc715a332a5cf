"""A Monte-Carlo BER/BLER sweep as a library call: :class:`BerConfig` -> :func:`run_ber` -> results + plot.

Builds the link (a classical codec with its decoder, or a learned codec from a checkpoint, over a channel with
the stated receiver CSI; or, with ``link``, a coded OFDM link from a preset or TOML file with one of its receivers,
:mod:`metacomm.codecs.ofdm`), runs :func:`metacomm.sims.engine.simulate` over the Eb/N0 points (point ``i`` seeded
from ``(seed, i)``: each sweep point is a pure function of the config), and writes ``results.json`` (schema in
:mod:`metacomm.sims.results`), ``results.csv`` and ``ber.png`` (BER and BLER vs Eb/N0 with confidence intervals,
the closed-form curve where one exists, and any ``compare`` results overlaid). Eb/N0 is in dB per information
bit; Es = 1 per complex channel use.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from metacomm._log import info
from metacomm._validation import (
    ConfigError,
    check_choice,
    check_db,
    check_finite,
    check_memory,
    check_nonneg_int,
    check_positive_int,
)
from metacomm.sims.links import (
    CLASSICAL_CODECS,
    CODECS,
    CSI_CHOICES,
    DECODERS,
    LINK_EXCLUSIVE,
    OFDM_DEFAULT_RECEIVER,
    load_ofdm_link_config,
    ofdm_receivers,
)

__all__ = ["BerConfig", "run_ber", "parse_ebno_range", "CHANNELS"]

CHANNELS = ("awgn", "rayleigh", "rician", "multipath", "tdl-a", "tdl-b", "tdl-c", "tdl-d", "tdl-e")


def parse_ebno_range(text: str, field: str = "ebno_db") -> list[float]:
    """Eb/N0 points in dB from ``START:STOP:STEP`` (inclusive of STOP when on the grid), ``a,b,c`` or ``x``.

    ``STEP`` must be > 0 and ``STOP >= START``; every value must be finite. The grid is computed as
    ``START + i * STEP`` (not by repeated addition) and rounded to 12 decimals, so ``0:1:0.1`` has 11 points.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field, "expected START:STOP:STEP (dB) or a comma list, got an empty value")
    s = text.strip()

    def num(tok: str) -> float:
        try:
            v = float(tok)
        except ValueError:
            raise ConfigError(field, f"cannot parse {tok.strip()!r} in {text!r} as a number (dB); expected "
                                     "START:STOP:STEP, e.g. 0:10:2, or a comma list, e.g. 0,3,6") from None
        if not math.isfinite(v):
            raise ConfigError(field, f"values must be finite numbers of dB, got {tok.strip()!r}")
        return check_db(field, v)  # within +-MAX_DB: refused here, before any point runs

    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise ConfigError(field, f"expected START:STOP:STEP (three numbers in dB), got {text!r}")
        start, stop, step = (num(p) for p in parts)
        if step <= 0:
            raise ConfigError(field, f"STEP must be > 0 dB, got {parts[2]!r}")
        if stop < start:
            raise ConfigError(field, f"STOP must be >= START, got {text!r}")
        span = (stop - start) / step
        if not math.isfinite(span) or span > 10_000:
            raise ConfigError(field, f"{text!r} gives more than 10000 points; at most 10000 allowed")
        n = int(math.floor(span + 1e-9)) + 1
        if n > 10_000:
            raise ConfigError(field, f"{text!r} gives {n} points; at most 10000 allowed")
        return [round(start + i * step, 12) for i in range(n)]
    vals = [num(p) for p in s.split(",")]
    return vals



@dataclass
class BerConfig:
    """Settings of a sweep (keys = ``metacomm ber`` flags without ``--``). ``ebno_db``: list of dB values or
    ``START:STOP:STEP`` / comma string; ``decoder``/``block_length``/``num_pilots``: ``None`` = the codec's
    default; ``checkpoint``: learned codecs; ``compare``: earlier results files overlaid on the plot; ``resume``:
    continue the interrupted sweep in ``out`` (its finished points are kept, the rest computed: the result equals an
    uninterrupted sweep's). ``link``: a coded OFDM link (preset name or TOML file) with ``receiver`` (default
    ``ls-nn``), instead of ``codec``/``channel`` (required otherwise); a block is then one LDPC codeword.
    ``ebno_db`` and ``out`` are required (checked by :meth:`validate`, so that a file naming neither ``codec`` nor
    ``link`` is told which of the two to give)."""

    codec: str | None = None
    channel: str | None = None
    ebno_db: object = None
    out: str | None = None
    link: str | None = None
    receiver: str | None = None
    decoder: str | None = None
    checkpoint: str | None = None
    csi: str = "ls"
    num_pilots: int | None = None
    block_length: int | None = None
    target_block_errors: int = 100
    max_blocks: int = 100000
    batch_size: int = 1000
    seed: int = 0
    device: str = "cpu"
    ci: str = "clopper-pearson"
    compare: list = field(default_factory=list)
    resume: bool = False
    progress: bool = True
    executor: str = "local"
    ray_address: str | None = None
    num_gpus: float = 0.0

    def validate(self) -> BerConfig:
        from metacomm.experiments.executors import check_executor_settings
        link_cfg = self._check_link()
        if link_cfg is None:
            check_choice("codec", self.codec, CODECS)
            check_choice("channel", self.channel, CHANNELS)
        if self.decoder is not None:
            check_choice("decoder", self.decoder, DECODERS)
        if self.ebno_db is None:
            raise ConfigError("ebno_db", "required: the Eb/N0 points in dB (START:STOP:STEP or a list)")
        if not isinstance(self.out, str) or not self.out.strip():
            raise ConfigError("out", f"required: the output directory, got {self.out!r}")
        if isinstance(self.ebno_db, str):
            self.ebno_db = parse_ebno_range(self.ebno_db)
        else:
            try:
                vals = [float(v) for v in self.ebno_db]
            except (TypeError, ValueError):
                raise ConfigError("ebno_db", f"expected dB values or START:STOP:STEP, got {self.ebno_db!r}") from None
            if not vals:
                raise ConfigError("ebno_db", "give at least one Eb/N0 value (dB)")
            self.ebno_db = [check_finite("ebno_db", v) for v in vals]
        self.batch_size = check_positive_int("batch_size", self.batch_size)
        self.max_blocks = check_positive_int("max_blocks", self.max_blocks)
        self.target_block_errors = check_positive_int("target_block_errors", self.target_block_errors)
        self.seed = check_nonneg_int("seed", self.seed)
        if link_cfg is not None:  # one batch of OFDM grids (received grids, estimates, LMMSE, decoder messages)
            check_memory("batch_size", link_cfg.bytes_per_block() * min(self.batch_size, self.max_blocks),
                         "one batch of OFDM blocks")
        if self.block_length is not None:
            self.block_length = check_positive_int("block_length", self.block_length)
            # bits, LLRs, symbols, noise and received samples of one batch: ~64 bytes per information bit
            check_memory(("block_length", "batch_size"),
                         64.0 * self.block_length * min(self.batch_size, self.max_blocks), "one batch of blocks")
        check_choice("ci", self.ci, ("clopper-pearson", "wilson"))
        check_choice("csi", self.csi, CSI_CHOICES)
        if self.num_pilots is not None:
            self.num_pilots = check_positive_int("num_pilots", self.num_pilots)
        self.executor, self.ray_address, self.num_gpus = check_executor_settings(self.executor, self.ray_address,
                                                                                 self.num_gpus, self.device)
        return self

    def _check_link(self):
        """With ``link``: refuse the codec-link keys, check ``receiver`` and the link file; returns its config."""
        if self.link is None:
            if self.receiver is not None:
                raise ConfigError("receiver", "selects the receiver of an OFDM link and needs --link NAME")
            for key in ("codec", "channel"):
                if getattr(self, key) is None:
                    raise ConfigError(key, "required: give --codec NAME and --channel NAME, or --link NAME (an "
                                           "OFDM link preset or TOML file)")
            return None
        for key in LINK_EXCLUSIVE:
            if getattr(self, key) is not None:
                raise ConfigError(key, "cannot be combined with --link: the link preset or TOML file describes the "
                                       "whole link (code, grid, channel); give either --link or --codec/--channel")
        if self.checkpoint is not None and self.receiver != "adaptive":
            raise ConfigError("checkpoint", "with --link only --receiver adaptive takes a checkpoint (its prior bank, "
                                            "scripts/make_ofdm_adaptive_prior.py); the other receivers take none")
        link_cfg = load_ofdm_link_config(self.link)
        if getattr(link_cfg, "kind", "ofdm") == "nr-pusch":  # PUSCHReceiver's own default: LS + linear
            from metacomm.codecs.nr_pusch import PUSCH_RECEIVERS
            self.receiver = check_choice("receiver", self.receiver or "ls-lin", PUSCH_RECEIVERS)
        else:
            self.receiver = check_choice("receiver", self.receiver or OFDM_DEFAULT_RECEIVER, ofdm_receivers())
        return link_cfg


def run_ber(cfg: BerConfig, *, log: Callable[[str], None] = info, executor=None):
    """Run the sweep of ``cfg``; returns ``(SweepResult, results.json path, plot path)``. With a non-local
    ``cfg.executor`` (or ``executor``, an :class:`~metacomm.experiments.executors.Executor` object) every point is
    a task; the driver merges the points and applies the early stop (the result equals the sequential sweep's)."""
    # Cheap validation first, so that bad input fails before anything slow is imported or built.
    cfg.validate()
    from metacomm.sims.engine import resolve_device, simulate
    from metacomm.sims.links import build_link, link_info
    from metacomm.sims.plots import plot_results
    from metacomm.sims.results import check_output_dir, load_results, save_results

    device = resolve_device(cfg.device, field="device")
    out = check_output_dir(cfg.out, field_name="out")
    png = out / "ber.png"
    if png.is_dir() or (png.exists() and not (out / "results.json").exists()):
        raise ConfigError("out", f"{str(png)!r} exists and does not belong to metacomm results in that directory; "
                                 "refusing to overwrite it (choose another output directory or remove the file)")
    compare = [load_results(c, field_name="compare") for c in cfg.compare]
    done = _finished_points(cfg, out, log) if cfg.resume else None

    link_cfg = {"codec": cfg.codec, "decoder": cfg.decoder, "channel": cfg.channel, "block_length": cfg.block_length,
                "checkpoint": cfg.checkpoint, "device": str(device), "csi": cfg.csi, "num_pilots": cfg.num_pilots}
    if cfg.link is not None:
        link_cfg = {"link": cfg.link, "receiver": cfg.receiver, "device": str(device), "checkpoint": cfg.checkpoint}
    link = build_link(link_cfg)
    decoder = cfg.decoder
    if decoder is None and cfg.codec in CLASSICAL_CODECS:
        from metacomm.codecs.registry import DECODERS as CODEC_DECODERS

        decoder = CODEC_DECODERS.get(cfg.codec, (None,))[0]  # the default the registry applied
    config = {"command": "metacomm ber", "codec": cfg.codec, "decoder": decoder, "channel": cfg.channel,
              "block_length": cfg.block_length, "checkpoint": cfg.checkpoint, "ebno_db": cfg.ebno_db,
              "csi": cfg.csi if cfg.channel != "awgn" else "perfect", "num_pilots": cfg.num_pilots,
              "argv": " ".join(sys.argv[1:]) if sys.argv else ""}
    if cfg.link is not None:
        config.update(csi=None, label=f"{cfg.link}/{cfg.receiver}")
    config.update(link_info(link))
    from metacomm.sims.results import SweepResult

    retired = []

    def retire():
        # results.csv and ber.png are written only when the sweep ends: the previous run's would sit beside this
        # run's partial results.json, describing another sweep. They go before this run's first write.
        if not retired:
            from metacomm.artefacts import retire_files
            retire_files(out, ("results.csv", "ber.png"))
            retired.append(True)

    def save_so_far(i, points):  # every finished point is on disk at once (atomic): resume continues from there
        # "finished": False marks the sweep as unfinished until the final save (which has no such key)
        partial = SweepResult(points=points[:i + 1], config=dict(config, sweep=_sweep_key(cfg), finished=False))
        retire()
        save_results(partial, out, csv_file=False)

    from metacomm.experiments.executors import LocalExecutor
    if (executor is None and cfg.executor != "local") or (executor is not None
                                                          and not isinstance(executor, LocalExecutor)):
        # points as tasks; the driver merges them and applies the early stop
        done = _remote_points(cfg, link_cfg, done or {}, device, lambda pts: save_so_far(len(pts) - 1, pts),
                              executor=executor)
    result = simulate(link, cfg.ebno_db, batch_size=cfg.batch_size, max_blocks=cfg.max_blocks,
                      target_block_errors=cfg.target_block_errors, seed=cfg.seed, device=device,
                      quiet=not cfg.progress, ci_method=cfg.ci,
                      progress_desc=config.get("label") or f"{cfg.codec}/{cfg.channel}",
                      config=config, done_points=done, on_point=save_so_far)
    result.config["sweep"] = _sweep_key(cfg)
    if "block_length_bits" not in result.config:
        k = next((p.bits_per_block for p in result.points if p.bits_per_block), None)
        if k:
            result.config["block_length_bits"] = k
    retire()
    jp = save_results(result, out)
    fig = plot_results([result, *compare], out / "ber.png")
    return result, jp, fig



def _point_context(link_cfg: dict):
    """A task's link (built once per worker process)."""
    from metacomm.sims.links import build_link
    return build_link(link_cfg)


def _point_task(link, spec):
    """Sweep point ``i`` alone (its draws depend on ``(seed, i)`` only): the raw counts as a PointResult."""
    from metacomm.sims.engine import simulate
    i, ebno, kw = spec
    return simulate(link, [ebno], first_point_index=i, early_stop=False, quiet=True, **kw).points[0]


def _remote_points(cfg: BerConfig, link_cfg: dict, done: dict, device, save, executor=None) -> dict:
    """Run the sweep's points through ``cfg.executor`` (``executor``: an :class:`Executor` to use instead) and
    return ``{i: PointResult}`` for every point up to the first error-free one (the points the sequential sweep
    would simulate; later points are cancelled or discarded). ``save(points)`` gets each new finished prefix."""
    from metacomm.experiments.executors import make_executor
    n = len(cfg.ebno_db)
    kw = {"batch_size": cfg.batch_size, "max_blocks": cfg.max_blocks, "target_block_errors": cfg.target_block_errors,
          "seed": cfg.seed, "device": str(device), "ci_method": cfg.ci}
    points = dict(done)

    def prefix():
        out = []
        for i in range(n):
            if i not in points:
                return out, False
            out.append(points[i])
            if points[i].block_errors == 0:
                return out, True
        return out, True

    have, complete = prefix()
    if complete:
        return points
    specs = [(i, e, kw) for i, e in enumerate(cfg.ebno_db) if i not in points]
    ex = executor or make_executor(cfg.executor, ray_address=cfg.ray_address, num_gpus=cfg.num_gpus)
    try:
        it = ex.map(_point_task, specs, context=(_point_context, (link_cfg,)))
        try:
            for j, pt in it:
                points[specs[j][0]] = pt
                new, complete = prefix()
                if len(new) > len(have):
                    have = new
                    save(have)
                if complete:
                    break
        finally:
            it.close()
    finally:
        if executor is None:
            ex.close()
    return {i: p for i, p in enumerate(have)}


def _sweep_key(cfg: BerConfig) -> dict:
    """What a resumed sweep must share with the interrupted one (the points' draws depend on these only); an OFDM
    link adds its name, receiver and resolved settings (a changed TOML file is another sweep)."""
    key = {k: getattr(cfg, k) for k in ("codec", "decoder", "channel", "checkpoint", "csi", "num_pilots",
                                        "block_length", "target_block_errors", "max_blocks", "batch_size", "seed",
                                        "ci", "ebno_db")}
    if cfg.link is not None:
        key.update(link=cfg.link, receiver=cfg.receiver, link_config=load_ofdm_link_config(cfg.link).to_dict())
    return key


def _finished_points(cfg: BerConfig, out, log: Callable[[str], None] = info) -> dict:
    """The points an interrupted run of the same sweep left in ``out/results.json`` (by index). No results.json
    (a run killed before its first point finished writes none) or one with no finished point: none, the sweep
    starts. A foreign file, or the results of another sweep, is refused."""
    from metacomm.sims.results import load_results
    path = out / "results.json"
    if not path.exists() and not path.is_symlink():
        log(f"ber: nothing to resume in {out} (no results.json: no point had finished); starting the sweep")
        return {}
    old = load_results(path, field_name="resume")
    key = _sweep_key(cfg)
    saved = old.config.get("sweep")
    if saved != key:
        diff = sorted(k for k in key if (saved or {}).get(k) != key[k])
        raise ConfigError("resume", f"{path} is from another sweep (differs in {', '.join(diff) or 'format'}); "
                                    "resume with the settings of the interrupted run")
    done = {i: p for i, p in enumerate(old.points) if p.simulated}
    if not done:
        log(f"ber: nothing to resume in {out} (no point had finished); starting the sweep")
    return done
