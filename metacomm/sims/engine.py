r"""The Monte-Carlo BER/BLER engine.

:func:`simulate` sweeps a **link** over Eb/N0 points and counts bit and block errors::

    from metacomm.sims.engine import simulate
    res = simulate(link, [0, 2, 4, 6], batch_size=1000, max_blocks=10**6, target_block_errors=100, seed=1)
    print(res.summary()); res.save("out/")

A *link* is either

* a metacomm Link ``link(batch_size, ebno_db, generator) -> (bits, bits_hat)`` -- ``ebno_db`` a Python float
  (dB), ``generator`` the :class:`torch.Generator` (on ``device``) from which the link must draw *all* of its
  randomness; ``bits``/``bits_hat`` tensors ``[..., k]`` of 0/1 values (any real or bool dtype), the last
  dimension being one block; or
* a Sionna-style ``mc_fun(batch_size, ebno_db) -> (b, b_hat)`` as accepted by :func:`sionna.phy.utils.sim_ber`
  (``ebno_db`` is passed as a 0-d float32 tensor on ``device``). Such a function draws from Sionna's global
  generators, so the engine seeds ``sionna.phy.config.seed`` with each point's seed (``seed_sionna=True``);
  that is the only way to make it reproducible, and it changes Sionna's global random state (and, through
  Sionna, torch's default generator); after the sweep ``config.seed`` holds the last simulated point's seed.

The kind is detected from the signature (a parameter named ``generator``, or three positional parameters ->
Link; two -> mc_fun); ``link_kind="link"|"mc_fun"`` overrides the detection.

**Stopping rules.** Each point runs batches of ``batch_size`` blocks until ``block_errors >=
target_block_errors`` (or ``bit_errors >= target_bit_errors``, when given) or ``blocks >= max_blocks`` (the last
batch is shortened so that exactly ``max_blocks`` blocks are simulated at most). With ``early_stop`` the sweep ends
after the first point without a single block error; the remaining points are reported with
``simulated=False`` and ``stop_reason="skipped_after_error_free_point"`` -- not as zero errors.

**Randomness.** Point ``i`` draws from its own generator seeded with :func:`point_seed` ``(seed, i)`` (NumPy's
``SeedSequence(seed, spawn_key=(i,))``), so on CPU a run is bit-for-bit reproducible and point ``i``'s counts do
not depend on which other points ran before it (sweeping ``[0, 5]`` or ``[5]`` with ``first_point_index=1``
gives the same counts at 5 dB).

**Speed.** Error counts are accumulated in int64 tensors on ``device``; the host reads them only at *check
points*. On CPU a read is free, so the counters are checked after every batch (``max_batches_per_check=1``:
the point stops at the first batch that reaches the target, as in :func:`sionna.phy.utils.sim_ber`). On CUDA
(default ``max_batches_per_check=64``) the engine plans after each check how many batches to run before the
next one: half the number of batches the current error rate predicts are still needed (at least 1, at most
``max_batches_per_check``), or doubling while no error has been seen. That costs about ``log2(target)`` host
syncs per point instead of one per batch, and overshoots the target by at most about one check's worth of
batches. The schedule depends only on the counts, so it is itself reproducible.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from metacomm import __version__
from metacomm._validation import ConfigError, check_choice, check_finite, check_nonneg_int, check_positive_int
from metacomm.channels.base import make_generator
from metacomm.sims import stats
from metacomm.sims.results import PointResult, SweepResult

__all__ = ["simulate", "point_seed", "resolve_device", "as_ebno_list", "link_kind_of"]

STOP_TARGET_BLOCK = "target_block_errors"
STOP_TARGET_BIT = "target_bit_errors"
STOP_MAX_BLOCKS = "max_blocks"
STOP_SKIPPED = "skipped_after_error_free_point"


def point_seed(seed: int, index: int) -> int:
    """The 63-bit seed of point ``index`` in a sweep with master ``seed`` (NumPy SeedSequence derivation)."""
    s = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(2, dtype=np.uint32)
    return int((int(s[0]) << 31) ^ int(s[1])) & ((1 << 63) - 1)


def resolve_device(device: str | torch.device, field: str = "device") -> torch.device:
    """Validate ``device`` ("cpu", "cuda", "cuda:N"); CUDA requested without CUDA -> ConfigError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(field, f"unknown device {device!r}; allowed: cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(field, f"unsupported device {device!r}; allowed: cpu, cuda, cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(field, "CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(field, f"no CUDA device {dev.index}; {torch.cuda.device_count()} available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def as_ebno_list(ebno_dbs: Any, field: str = "ebno_db") -> list[float]:
    """Eb/N0 points (dB) as a non-empty list of finite floats (scalar, sequence, ndarray or tensor in)."""
    if isinstance(ebno_dbs, torch.Tensor):
        vals = ebno_dbs.detach().cpu().reshape(-1).tolist()
    elif isinstance(ebno_dbs, np.ndarray):
        vals = ebno_dbs.reshape(-1).tolist()
    elif isinstance(ebno_dbs, (int, float, np.floating, np.integer)) and not isinstance(ebno_dbs, bool):
        vals = [ebno_dbs]
    elif isinstance(ebno_dbs, Iterable) and not isinstance(ebno_dbs, (str, bytes)):
        vals = list(ebno_dbs)
    else:
        raise ConfigError(field, f"expected Eb/N0 values in dB (a number or a list), got {ebno_dbs!r}")
    if not vals:
        raise ConfigError(field, "at least one Eb/N0 point (dB) is required")
    return [check_finite(field, v) for v in vals]


def link_kind_of(link: Callable) -> str:
    """"link" for ``(batch_size, ebno_db, generator)`` callables, "mc_fun" for ``(batch_size, ebno_db)``."""
    fn = link.forward if isinstance(link, nn.Module) else link
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "link"
    params = list(sig.parameters.values())
    if "generator" in sig.parameters:
        return "link"
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return "link"
    npos = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if npos >= 3:
        return "link"
    if npos == 2:
        return "mc_fun"
    raise ConfigError("link", "expected link(batch_size, ebno_db, generator) or mc_fun(batch_size, ebno_db), "
                              f"got a callable with signature {sig}")


def _check_outputs(out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise ConfigError("link", "must return a pair of tensors (bits, bits_hat)")
    b, bh = out
    if b.shape != bh.shape or b.dim() == 0 or b.shape[-1] == 0:
        raise ConfigError("link", f"bits and bits_hat must have the same non-empty shape [..., k], got "
                                  f"{tuple(b.shape)} and {tuple(bh.shape)}")
    return b, bh


def _invalid(bh: torch.Tensor, soft: bool) -> torch.Tensor:
    """How many entries of ``bits_hat`` are not valid decisions: non-finite values, and (hard decisions) values
    other than 0 and 1. Counted on the device and checked at the next host sync (no extra sync per batch).

    Hard decisions in one product, ``count_nonzero(bh * (1 - bh))``: zero exactly for 0 and 1; NaN, +-inf and
    every other finite value give a non-zero (or non-finite) product in floating point (no underflow to 0: the
    smaller factor is at least the value itself or ``1 - bh``, exact near 1); for integers ``x (1 - x)`` wraps to 0
    modulo ``2^bits`` only for ``x`` in {0, 1} (``x`` and ``x - 1`` are coprime). Three element-wise passes where the
    isfinite / == 0 / == 1 form took eight (~20 % of an uncoded QPSK batch; ``benchmarks/ber_vs_sionna.py``)."""
    if bh.dtype == torch.bool or (soft and not bh.is_floating_point()):
        return bh.new_zeros((), dtype=torch.int64)
    if soft:
        return torch.count_nonzero(~torch.isfinite(bh))
    return torch.count_nonzero(bh * (1 - bh))


def _plan(counts: tuple[int, int, int], batches_done: int, prev_chunk: int, batch_size: int, blocks_left: int,
          target_block: int | None, target_bit: int | None, max_chunk: int) -> int:
    """Number of batches to run before the next host check (see module docstring)."""
    bit_err, blk_err, blocks = counts
    needs = []
    if target_block is not None and blk_err > 0:
        needs.append((target_block - blk_err) * blocks / blk_err)
    if target_bit is not None and bit_err > 0:
        needs.append((target_bit - bit_err) * blocks / bit_err)
    if needs:
        chunk = math.ceil(max(min(needs), 1.0) / batch_size / 2.0)
    elif target_block is None and target_bit is None:
        chunk = max_chunk
    else:
        chunk = 1 if batches_done == 0 else 2 * prev_chunk
    chunk = max(1, min(chunk, max_chunk))
    return min(chunk, math.ceil(blocks_left / batch_size))


@torch.no_grad()
def simulate(
    link: Callable,
    ebno_dbs: Any,
    *,
    batch_size: int,
    max_blocks: int,
    target_block_errors: int | None,
    target_bit_errors: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    quiet: bool = False,
    early_stop: bool = True,
    progress_desc: str | None = None,
    soft_estimates: bool = False,
    link_kind: str = "auto",
    alpha: float = 0.05,
    ci_method: str = "clopper-pearson",
    seed_sionna: bool = True,
    first_point_index: int = 0,
    max_batches_per_check: int | None = None,
    config: dict[str, Any] | None = None,
    done_points: dict[int, PointResult] | None = None,
    on_point: Callable[[int, list[PointResult]], None] | None = None,
) -> SweepResult:
    """Monte-Carlo BER/BLER sweep of ``link`` over ``ebno_dbs`` (dB). See the module docstring.

    Args:
        link: a Link ``(batch_size, ebno_db, generator) -> (bits, bits_hat)`` or a Sionna ``mc_fun``.
        ebno_dbs: Eb/N0 points in dB (number, list, ndarray or tensor), each finite.
        batch_size: blocks per link call (``--batch-size``), positive.
        max_blocks: at most this many blocks per point (``--max-blocks``), positive.
        target_block_errors: stop a point after this many block errors (``--target-block-errors``); ``None``
            disables the rule (then ``target_bit_errors`` or ``max_blocks`` stops the point).
        target_bit_errors: optional bit-error target (stop at whichever target is reached first).
        seed: master seed (``--seed``), non-negative; point ``i`` uses :func:`point_seed` ``(seed, i)``.
        device: where the generator and the counters live (``--device``).
        quiet: no progress bars.
        early_stop: end the sweep after the first point without block errors.
        progress_desc: prefix of the progress bars.
        soft_estimates: ``bits_hat`` are logits (LLR = ln P(1)/P(0)); hard decision ``bits_hat > 0``.
        link_kind: "auto" (from the signature), "link" or "mc_fun".
        alpha, ci_method: interval level ``1 - alpha`` and method ("clopper-pearson" or "wilson").
        seed_sionna: for an ``mc_fun``, set ``sionna.phy.config.seed`` to each point's seed.
        first_point_index: index of ``ebno_dbs[0]`` in the seed derivation (to resume/split a sweep).
        done_points: ``{i: PointResult}`` points finished by an earlier, interrupted run of the same sweep (same
            link, settings and seed); they are reused, not recomputed. Every point's draws depend only on
            ``(seed, index)``, so the result equals an uninterrupted sweep's.
        on_point: ``on_point(i, points)`` after point ``i`` is final (run, reused or skipped), e.g. to write the
            results so far atomically.
        max_batches_per_check: upper bound on batches between two host reads of the counters (default: 1 on
            CPU, 64 on CUDA).
        config: extra entries stored in ``SweepResult.config`` (e.g. the CLI choices).

    Returns:
        :class:`~metacomm.sims.results.SweepResult` with one point per entry of ``ebno_dbs``.
    """
    ebnos = as_ebno_list(ebno_dbs)
    batch_size = check_positive_int("batch_size", batch_size)
    max_blocks = check_positive_int("max_blocks", max_blocks)
    if target_block_errors is not None:
        target_block_errors = check_positive_int("target_block_errors", target_block_errors)
    if target_bit_errors is not None:
        target_bit_errors = check_positive_int("target_bit_errors", target_bit_errors)
    seed = check_nonneg_int("seed", seed)
    first_point_index = check_nonneg_int("first_point_index", first_point_index)
    check_choice("ci_method", ci_method, stats.CI_METHODS)
    stats.clopper_pearson(0, 1, alpha)  # validates alpha
    dev = resolve_device(device)
    if max_batches_per_check is None:
        max_batches_per_check = 1 if dev.type == "cpu" else 64
    max_batches_per_check = check_positive_int("max_batches_per_check", max_batches_per_check)
    if not callable(link):
        raise ConfigError("link", f"must be callable, got {type(link).__name__}")
    kind = link_kind_of(link) if link_kind == "auto" else check_choice("link_kind", link_kind, ("link", "mc_fun"))

    cfg: dict[str, Any] = {
        "batch_size": batch_size, "max_blocks": max_blocks, "target_block_errors": target_block_errors,
        "target_bit_errors": target_bit_errors, "seed": seed, "device": str(dev), "early_stop": bool(early_stop),
        "soft_estimates": bool(soft_estimates), "link_kind": kind, "alpha": float(alpha), "ci_method": ci_method,
        "confidence": 1.0 - float(alpha), "first_point_index": first_point_index,
        "max_batches_per_check": max_batches_per_check,
        "metacomm_version": __version__, "torch_version": torch.__version__,
    }
    if config:
        cfg.update(config)

    points = [PointResult(ebno_db=e, seed=point_seed(seed, first_point_index + i), alpha=float(alpha),
                          ci_method=ci_method) for i, e in enumerate(ebnos)]
    stopped = False
    for i, pt in enumerate(points):
        if stopped:
            pt.stop_reason = STOP_SKIPPED
        elif done_points and i in done_points and done_points[i].simulated:
            pt = points[i] = done_points[i]
        else:
            _run_point(link, kind, pt, batch_size=batch_size, max_blocks=max_blocks, target_block=target_block_errors,
                       target_bit=target_bit_errors, device=dev, quiet=quiet, desc=progress_desc,
                       soft=soft_estimates, seed_sionna=seed_sionna, max_chunk=max_batches_per_check,
                       label=f"{i + 1}/{len(points)}")
        if not stopped and early_stop and pt.block_errors == 0:
            stopped = True
        if on_point is not None:
            on_point(i, points)
    return SweepResult(points=points, config=cfg)


def _run_point(link, kind, pt: PointResult, *, batch_size, max_blocks, target_block, target_bit, device, quiet,
               desc, soft, seed_sionna, max_chunk, label) -> None:
    gen = make_generator(pt.seed, device)
    if kind == "mc_fun":
        ebno_arg: Any = torch.tensor(pt.ebno_db, dtype=torch.float32, device=device)
        if seed_sionna:
            import sionna.phy

            sionna.phy.config.seed = pt.seed

        def call(bs):
            return link(bs, ebno_arg)
    else:
        def call(bs):
            return link(bs, pt.ebno_db, gen)

    acc = torch.zeros(4, dtype=torch.int64, device=device)  # bit errors, block errors, sum e_j^2, invalid
    blocks = bits = 0
    k = 0
    batches = 0
    chunk = 0
    counts = (0, 0, 0)
    bar = tqdm(total=max_blocks, unit="blk", disable=quiet, leave=True, dynamic_ncols=True,
               desc=f"{desc + ' ' if desc else ''}[{label}] Eb/N0 {pt.ebno_db:g} dB")
    t0 = time.perf_counter()
    try:
        while True:
            chunk = _plan(counts, batches, chunk, batch_size, max_blocks - blocks, target_block, target_bit,
                          max_chunk)
            for _ in range(chunk):
                bs = min(batch_size, max_blocks - blocks)
                if bs <= 0:
                    break
                b, bh = _check_outputs(call(bs))
                kb = b.shape[-1]
                if k == 0:
                    k = kb
                elif kb != k:
                    raise ConfigError("link", f"block length changed between batches ({k} -> {kb} bits)")
                invalid = _invalid(bh, soft).to(device)
                if soft:
                    bh = bh > 0
                if b.device != device:
                    b = b.to(device)
                if bh.device != device:
                    bh = bh.to(device)
                e = (b.reshape(-1, k) != bh.reshape(-1, k).to(b.dtype)).sum(dim=1)
                acc += torch.stack((e.sum(), (e > 0).sum(), (e * e).sum(), invalid))
                nblk = b.numel() // k
                blocks += nblk
                bits += nblk * k
                batches += 1
            counts_t = acc.tolist()  # the only host sync
            if counts_t[3]:
                raise ConfigError("link", f"returned {counts_t[3]} invalid decisions at Eb/N0 {pt.ebno_db:g} dB "
                                          "(NaN/inf, or values other than 0/1 without soft_estimates): a model with "
                                          "non-finite weights? They are not counted as ordinary errors")
            counts = (counts_t[0], counts_t[1], blocks)
            bar.update(blocks - bar.n)
            bar.set_postfix_str(f"BER={counts_t[0] / bits:.3e} BLER={counts_t[1] / blocks:.3e} "
                                f"blk_err={counts_t[1]}", refresh=False)
            if target_block is not None and counts_t[1] >= target_block:
                pt.stop_reason = STOP_TARGET_BLOCK
                break
            if target_bit is not None and counts_t[0] >= target_bit:
                pt.stop_reason = STOP_TARGET_BIT
                break
            if blocks >= max_blocks:
                pt.stop_reason = STOP_MAX_BLOCKS
                break
    finally:
        bar.close()
    pt.runtime_s = time.perf_counter() - t0
    pt.bit_errors, pt.block_errors, pt.bit_errors_sq = (int(v) for v in acc.tolist()[:3])
    pt.bits, pt.blocks, pt.bits_per_block = bits, blocks, k
    pt.simulated = True
