"""Monte-Carlo results: data classes, ``results.json`` / ``results.csv`` writing and loading.

``results.json`` schema (extra keys are allowed and ignored by readers)::

    {"format": "metacomm-results/1",          # the artefact tag (metacomm.artefacts), also in config.format
     "config": {"format": "metacomm-results/1", ...},
     "points": [{"ebno_db": float,            # Eb/N0 in dB (information bits)
                 "ber": float | null,         # bit_errors / bits; null when the point was not simulated
                 "bler": float | null,        # block_errors / blocks
                 "bit_errors": int, "bits": int, "block_errors": int, "blocks": int,
                 "ber_ci": [lo, hi] | null,   # 95% (1 - alpha) binomial interval over bits (see stats.py)
                 "bler_ci": [lo, hi] | null,  # same over blocks
                 "simulated": bool,           # false: skipped after an error-free point (early stop)
                 "stop_reason": str,          # target_block_errors | target_bit_errors | max_blocks | ...
                 "ber_ci_block": [lo, hi] | null,  # BER interval with the block as independent unit
                 ...}, ...]}

A point that was not simulated (the sweep stopped early after an error-free point) is reported with zero counts,
``null`` rates and intervals and ``"simulated": false`` -- never as a measured zero. ``results.csv`` holds the
same rows (empty cells for ``null``). ``metacomm ber`` writes the file after every finished point; until the
sweep is complete it holds the points so far and ``"finished": false`` in ``config`` (``--resume`` continues it).

Files are written and read through :mod:`metacomm.artefacts`: atomically (temporary file in the same directory,
then :func:`os.replace`), as strict JSON (no ``NaN``/``Infinity`` tokens; non-finite numbers are ``null``). An
existing file is only replaced if it is itself a metacomm results file; anything else raises
:class:`~metacomm.ConfigError`. :func:`load_results` also accepts an untagged file with the schema's keys (written
by another tool) but refuses another metacomm kind (e.g. a ``fewshot`` results file).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metacomm import artefacts
from metacomm._validation import ConfigError
from metacomm.sims import stats

__all__ = [
    "FORMAT",
    "PointResult",
    "SweepResult",
    "save_results",
    "load_results",
    "write_json",
    "write_csv",
    "CSV_COLUMNS",
    "check_output_dir",
    "records_dataframe",
]

KIND = "metacomm-results"
FORMAT = artefacts.format_tag(KIND)  # "metacomm-results/1"
REQUIRED_POINT_KEYS = ("ebno_db", "ber", "bler", "bit_errors", "bits", "block_errors", "blocks", "ber_ci",
                       "bler_ci")
CSV_COLUMNS = ("ebno_db", "ber", "ber_ci_lo", "ber_ci_hi", "bler", "bler_ci_lo", "bler_ci_hi", "bit_errors",
               "bits", "block_errors", "blocks", "simulated", "stop_reason", "ber_ci_block_lo", "ber_ci_block_hi")


@dataclass
class PointResult:
    """Counts of one Eb/N0 point. Rates and intervals are derived properties.

    ``bit_errors_sq`` is ``sum_j e_j^2`` over blocks (``e_j`` bit errors of block ``j``), used for the
    block-level BER interval; ``bits_per_block`` is ``k``.
    """

    ebno_db: float
    bit_errors: int = 0
    bits: int = 0
    block_errors: int = 0
    blocks: int = 0
    bit_errors_sq: int = 0
    bits_per_block: int = 0
    simulated: bool = False
    stop_reason: str = "not_simulated"
    seed: int | None = None
    runtime_s: float = 0.0
    alpha: float = 0.05
    ci_method: str = "clopper-pearson"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ber(self) -> float | None:
        return self.bit_errors / self.bits if self.simulated and self.bits > 0 else None

    @property
    def bler(self) -> float | None:
        return self.block_errors / self.blocks if self.simulated and self.blocks > 0 else None

    @property
    def ber_ci(self) -> tuple[float, float] | None:
        """Binomial interval over bits (assumes independent bit errors; see :mod:`metacomm.sims.stats`)."""
        if not self.simulated or self.bits == 0:
            return None
        return stats.binomial_ci(self.bit_errors, self.bits, self.alpha, self.ci_method)

    @property
    def bler_ci(self) -> tuple[float, float] | None:
        if not self.simulated or self.blocks == 0:
            return None
        return stats.binomial_ci(self.block_errors, self.blocks, self.alpha, self.ci_method)

    @property
    def ber_ci_block(self) -> tuple[float, float] | None:
        """BER interval with the block as the independent unit (valid for correlated bit errors)."""
        if not self.simulated or self.blocks == 0 or self.bits_per_block <= 0:
            return None
        return stats.ber_block_ci(self.bit_errors, self.bit_errors_sq, self.blocks, self.bits_per_block,
                                  self.alpha, self.ci_method)

    @property
    def throughput_bps(self) -> float | None:
        """Simulated bits per second of wall-clock time at this point."""
        return self.bits / self.runtime_s if self.runtime_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        def lst(ci):
            return None if ci is None else [float(ci[0]), float(ci[1])]

        d = {
            "ebno_db": float(self.ebno_db),
            "ber": self.ber,
            "bler": self.bler,
            "bit_errors": int(self.bit_errors),
            "bits": int(self.bits),
            "block_errors": int(self.block_errors),
            "blocks": int(self.blocks),
            "ber_ci": lst(self.ber_ci),
            "bler_ci": lst(self.bler_ci),
            "simulated": bool(self.simulated),
            "stop_reason": self.stop_reason,
            "ber_ci_block": lst(self.ber_ci_block),
            "bit_errors_sq": int(self.bit_errors_sq),
            "bits_per_block": int(self.bits_per_block),
            "seed": self.seed,
            "runtime_s": float(self.runtime_s),
            "alpha": float(self.alpha),
            "ci_method": self.ci_method,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "points") -> PointResult:
        for key in REQUIRED_POINT_KEYS:
            if key not in d:
                raise ConfigError(where, f"missing key {key!r} (required: {', '.join(REQUIRED_POINT_KEYS)})")
        try:
            ebno = float(d["ebno_db"])
            counts = {k: int(d[k]) for k in ("bit_errors", "bits", "block_errors", "blocks")}
        except (TypeError, ValueError):
            raise ConfigError(where, "ebno_db must be a number and the counts integers") from None
        if not math.isfinite(ebno):
            raise ConfigError(where, f"ebno_db must be finite, got {d['ebno_db']!r}")
        if min(counts.values()) < 0 or counts["bit_errors"] > counts["bits"] or \
                counts["block_errors"] > counts["blocks"]:
            raise ConfigError(where, f"inconsistent counts {counts}")
        simulated = bool(d.get("simulated", d["ber"] is not None))
        if simulated and d["ber"] is not None and counts["bits"] > 0:
            if not math.isclose(float(d["ber"]), counts["bit_errors"] / counts["bits"], rel_tol=1e-9, abs_tol=0):
                raise ConfigError(where, "ber does not equal bit_errors / bits")
        if simulated and d["bler"] is not None and counts["blocks"] > 0:
            if not math.isclose(float(d["bler"]), counts["block_errors"] / counts["blocks"], rel_tol=1e-9,
                                abs_tol=0):
                raise ConfigError(where, "bler does not equal block_errors / blocks")
        known = set(REQUIRED_POINT_KEYS) | {"simulated", "stop_reason", "ber_ci_block", "bit_errors_sq",
                                             "bits_per_block", "seed", "runtime_s", "alpha", "ci_method"}
        return cls(
            ebno_db=ebno, **counts,
            bit_errors_sq=int(d.get("bit_errors_sq", 0)),
            bits_per_block=int(d.get("bits_per_block", counts["bits"] // counts["blocks"] if counts["blocks"] else 0)),
            simulated=simulated,
            stop_reason=str(d.get("stop_reason", "unknown" if simulated else "not_simulated")),
            seed=d.get("seed"),
            runtime_s=float(d.get("runtime_s", 0.0)),
            alpha=float(d.get("alpha", 0.05)),
            ci_method=str(d.get("ci_method", "clopper-pearson")),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class SweepResult:
    """A Monte-Carlo sweep: one :class:`PointResult` per requested Eb/N0 point, plus the run's ``config``."""

    points: list[PointResult]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ebno_db(self) -> np.ndarray:
        return np.array([p.ebno_db for p in self.points], dtype=np.float64)

    def _rates(self, name: str) -> np.ndarray:
        vals = [getattr(p, name) for p in self.points]
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)

    @property
    def ber(self) -> np.ndarray:
        """BER per point (NaN where not simulated)."""
        return self._rates("ber")

    @property
    def bler(self) -> np.ndarray:
        return self._rates("bler")

    @property
    def simulated(self) -> np.ndarray:
        return np.array([p.simulated for p in self.points], dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        cfg = dict(self.config)
        cfg.setdefault("format", FORMAT)
        return {"config": cfg, "points": [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, d: Any, where: str = "results") -> SweepResult:
        if not isinstance(d, dict) or not isinstance(d.get("config"), dict) or not isinstance(d.get("points"), list):
            raise ConfigError(where, 'not a metacomm results file: expected {"config": {...}, "points": [...]}')
        pts = []
        for i, p in enumerate(d["points"]):
            if not isinstance(p, dict):
                raise ConfigError(where, f"points[{i}] must be an object")
            pts.append(PointResult.from_dict(p, where=f"{where}: points[{i}]"))
        return cls(points=pts, config=dict(d["config"]))

    def save(self, out_dir: str | os.PathLike, *, csv_file: bool = True) -> Path:
        return save_results(self, out_dir, csv_file=csv_file)

    def __repr__(self) -> str:
        """One line: what was simulated, the Eb/N0 range [dB], how many points ran and the BER/BLER range."""
        c = self.config
        what = ", ".join(f"{k}={c[k]!r}" for k in ("label", "codec", "decoder", "channel", "csi", "link", "receiver")
                         if c.get(k) not in (None, ""))
        n = len(self.points)
        sim = [p for p in self.points if p.simulated]
        parts = [what] if what else []
        if n:
            x = self.ebno_db
            parts.append(f"points={n} at Eb/N0 {x.min():g}..{x.max():g} dB ({len(sim)} simulated)")
        else:
            parts.append("points=0")
        for name in ("ber", "bler"):
            v = [getattr(p, name) for p in sim]
            v = [r for r in v if r is not None]
            if v:
                parts.append(f"{name.upper()} {max(v):.3g}..{min(v):.3g}")
        if c.get("finished") is False:
            parts.append("unfinished")
        return f"SweepResult({', '.join(parts)})"

    def to_records(self) -> list[dict[str, Any]]:
        """Long format, one dict per Eb/N0 point (in sweep order): ``ebno_db`` [dB], ``ber``, ``ber_ci_lo``,
        ``ber_ci_hi``, ``bler``, ``bler_ci_lo``, ``bler_ci_hi`` (NaN where not simulated; 95 % binomial intervals),
        the counts (``bit_errors``, ``bits``, ``block_errors``, ``blocks``), ``simulated``, ``stop_reason``,
        ``ber_ci_block_lo``/``_hi`` (the block-level BER interval) and ``runtime_s`` -- the columns of
        ``results.csv`` plus the runtime."""
        nan = float("nan")
        rows = []
        for p in self.points:
            rec: dict[str, Any] = {"ebno_db": float(p.ebno_db)}
            for name, ci in (("ber", p.ber_ci), ("bler", p.bler_ci)):
                v = getattr(p, name)
                rec[name] = nan if v is None else float(v)
                rec[f"{name}_ci_lo"], rec[f"{name}_ci_hi"] = (nan, nan) if ci is None else map(float, ci)
            rec.update(bit_errors=p.bit_errors, bits=p.bits, block_errors=p.block_errors, blocks=p.blocks,
                       simulated=bool(p.simulated), stop_reason=p.stop_reason)
            blk = p.ber_ci_block
            rec["ber_ci_block_lo"], rec["ber_ci_block_hi"] = (nan, nan) if blk is None else map(float, blk)
            rec["runtime_s"] = float(p.runtime_s)
            rows.append(rec)
        return rows

    def to_dataframe(self):
        """:meth:`to_records` as a ``pandas.DataFrame`` (one row per point; pandas is optional:
        :func:`records_dataframe`)."""
        return records_dataframe(self.to_records())

    def summary(self) -> str:
        """A plain-text table of the points."""
        lines = [f"{'Eb/N0 [dB]':>10} {'BER':>11} {'BLER':>11} {'bit err':>10} {'bits':>12} {'blk err':>9} "
                 f"{'blocks':>10}  status"]
        for p in self.points:
            if p.simulated:
                lines.append(f"{p.ebno_db:10.2f} {p.ber:11.4e} {p.bler:11.4e} {p.bit_errors:10d} {p.bits:12d} "
                             f"{p.block_errors:9d} {p.blocks:10d}  {p.stop_reason}")
            else:
                lines.append(f"{p.ebno_db:10.2f} {'-':>11} {'-':>11} {'-':>10} {'-':>12} {'-':>9} {'-':>10}  "
                             f"{p.stop_reason}")
        return "\n".join(lines)


def records_dataframe(records: list[dict]):
    """``pandas.DataFrame.from_records(records)``; a ConfigError naming ``pandas`` (with the install command) when
    pandas is missing -- pandas is an optional dependency of the result objects' ``to_dataframe()``."""
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("pandas", "to_dataframe() needs pandas, which is not installed (pip install pandas); "
                                    "to_records() gives the same rows as a list of dicts") from None
    return pd.DataFrame.from_records(records)


def _is_metacomm_json(path: Path) -> bool:
    """Whether ``path`` is a BER results file of ours (what ``--out`` may replace): a regular file, strict JSON."""
    if not Path(path).is_file():  # a FIFO would block the read; a directory or socket is not ours
        return False
    try:
        d = artefacts.read_json(path, kind=KIND, field="out", allow_untagged=True)
    except ConfigError:
        return False
    if not isinstance(d, dict) or not isinstance(d.get("config"), dict) or not isinstance(d.get("points"), list):
        return False
    if any(kind == KIND for kind, _ in artefacts.tags_of(d)):
        return True
    return all(isinstance(p, dict) and all(k in p for k in REQUIRED_POINT_KEYS) for p in d["points"])


def _is_metacomm_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError):
        return False
    return header is not None and tuple(header[: len(CSV_COLUMNS)]) == CSV_COLUMNS


def _check_overwrite(path: Path, field_name: str, is_ours) -> None:
    if path.exists():
        if path.is_dir():
            raise ConfigError(field_name, f"{str(path)!r} is a directory")
        if not is_ours(path):
            raise ConfigError(field_name, f"{str(path)!r} exists and is not a metacomm results file; refusing to "
                                          "overwrite it (choose another --out directory or remove the file)")


def write_json(result: SweepResult, path: str | os.PathLike, field_name: str = "out") -> Path:
    """Write ``result`` as ``results.json`` (schema in the module docstring) atomically to ``path``."""
    path = Path(path)
    _check_overwrite(path, field_name, _is_metacomm_json)
    return artefacts.write_json(path, result.to_dict(), kind=KIND, field=field_name)


def write_csv(result: SweepResult, path: str | os.PathLike, field_name: str = "out") -> Path:
    """Write one row per point (columns :data:`CSV_COLUMNS`; empty cells for undefined values) atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def f(v):
        return "" if v is None else repr(float(v))

    for p in result.points:
        ber_ci, bler_ci, blk_ci = p.ber_ci, p.bler_ci, p.ber_ci_block
        w.writerow([
            repr(float(p.ebno_db)), f(p.ber), f(ber_ci and ber_ci[0]), f(ber_ci and ber_ci[1]),
            f(p.bler), f(bler_ci and bler_ci[0]), f(bler_ci and bler_ci[1]),
            p.bit_errors, p.bits, p.block_errors, p.blocks, int(p.simulated), p.stop_reason,
            f(blk_ci and blk_ci[0]), f(blk_ci and blk_ci[1]),
        ])
    path = Path(path)
    _check_overwrite(path, field_name, _is_metacomm_csv)
    return artefacts.write_text(path, buf.getvalue(), field=field_name)


def check_output_dir(out_dir: str | os.PathLike, *, csv_file: bool = True, field_name: str = "out") -> Path:
    """Raise :class:`~metacomm.ConfigError` unless ``results.json``/``results.csv`` may be (re)written in
    ``out_dir`` (absent, or existing metacomm results files), and unless files can be created there (probed with
    a temporary file). Call before a long run to fail early."""
    return _check_targets(artefacts.check_writable_dir(out_dir, field=field_name), csv_file, field_name)


def _check_targets(out: Path, csv_file: bool, field_name: str) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigError(field_name, f"{str(out)!r} exists and is not a directory")
    targets = [(out / "results.json", _is_metacomm_json)]
    if csv_file:
        targets.append((out / "results.csv", _is_metacomm_csv))
    for path, is_ours in targets:
        if path.exists() and (path.is_dir() or not is_ours(path)):
            raise ConfigError(field_name, f"{str(path)!r} exists and is not a metacomm results file; refusing to "
                                          "overwrite it (choose another --out directory or remove the file)")
    return out


def save_results(result: SweepResult, out_dir: str | os.PathLike, *, csv_file: bool = True) -> Path:
    """Write ``out_dir/results.json`` (and ``out_dir/results.csv``); returns the JSON path.

    Both targets are checked before anything is written, so a refusal leaves the directory untouched.
    """
    out = _check_targets(Path(out_dir), csv_file, "out")
    jp = write_json(result, out / "results.json")
    if csv_file:
        write_csv(result, out / "results.csv")
    return jp


def load_results(path: str | os.PathLike, field_name: str = "results") -> SweepResult:
    """Load and validate a ``results.json`` (a file, or a directory containing one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise ConfigError(field_name, f"no such results file: {str(p)!r}")
    d = artefacts.read_json(p, kind=KIND, field=field_name, allow_untagged=True)
    return SweepResult.from_dict(d, where=f"{field_name} {str(p)!r}")
