r"""Confidence intervals for Monte-Carlo error rates.

A Monte-Carlo point observes ``x`` errors in ``n`` trials (bits or blocks). Two two-sided intervals for the
success probability ``p`` of a binomial ``Bin(n, p)`` are provided, both at level ``1 - alpha`` (default 95 %):

* **Clopper-Pearson** (exact, conservative; the default): the inversion of two one-sided binomial tests,

  .. math::

      p_\mathrm{lo} = B^{-1}(\alpha/2;\, x,\, n - x + 1), \qquad
      p_\mathrm{hi} = B^{-1}(1 - \alpha/2;\, x + 1,\, n - x),

  with :math:`B^{-1}` the quantile of the Beta distribution, :math:`p_\mathrm{lo} = 0` for ``x = 0`` and
  :math:`p_\mathrm{hi} = 1` for ``x = n``. Its coverage is ``>= 1 - alpha`` for every ``p`` and ``n``.
* **Wilson** score interval: the inversion of the normal-approximation score test, with
  :math:`z = \Phi^{-1}(1 - \alpha/2)`,

  .. math::

      \frac{\hat p + z^2/(2n) \pm z \sqrt{\hat p (1 - \hat p)/n + z^2/(4n^2)}}{1 + z^2/n}.

  Shorter than Clopper-Pearson, with coverage close to (occasionally slightly below) nominal.

**BLER** intervals are binomial intervals over blocks: blocks are simulated independently, so they are exact
(Clopper-Pearson) for the block-error rate.

**BER caveat -- bits within a block are correlated.** The binomial model over *bits* assumes that the ``n`` bits
err independently. That holds for uncoded BPSK/QPSK over AWGN, but not in general: a decoding failure of a
channel code flips many bits of one block at once, Gray-labelled QAM bits of one symbol share its noise, and
block fading puts all bits of a block in the same deep fade. The bit-level interval is then too narrow.
:func:`ber_block_ci` gives an interval that treats the *block* as the independent unit: with ``e_j`` the bit
errors of block ``j`` (``N`` blocks of ``k`` bits, ``p = sum e_j / (N k)``), the variance of the ratio estimator
is estimated from the per-block counts,

.. math::

    \widehat{\mathrm{Var}}(\hat p) = \frac{1}{N (N - 1) k^2} \sum_j (e_j - k \hat p)^2,

which defines the *design effect* :math:`d = \widehat{\mathrm{Var}}(\hat p) / (\hat p (1 - \hat p)/(N k))` and the
effective number of independent bits :math:`n_\mathrm{eff} = N k / d`, with ``d`` clipped to ``[1, k]`` so that
``N <= n_eff <= N k`` (anti-correlation is not credited). The binomial interval is then evaluated with ``n_eff`` trials and
``x_eff = \hat p\, n_\mathrm{eff}`` errors (Kish's effective sample size). It only needs the running sums
``sum e_j`` and ``sum e_j^2``, which the engine accumulates.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from metacomm._validation import ConfigError, check_choice

__all__ = [
    "clopper_pearson",
    "wilson",
    "binomial_ci",
    "ber_block_ci",
    "design_effect",
    "CI_METHODS",
]

CI_METHODS = ("clopper-pearson", "wilson")


def _check_counts(x, n) -> tuple[float, float]:
    try:
        xf, nf = float(x), float(n)
    except (TypeError, ValueError):
        raise ConfigError("errors", f"counts must be numbers, got x={x!r}, n={n!r}") from None
    if not (math.isfinite(xf) and math.isfinite(nf)):
        raise ConfigError("errors", f"counts must be finite, got x={x!r}, n={n!r}")
    if nf < 0 or xf < 0 or xf > nf:
        raise ConfigError("errors", f"need 0 <= errors <= trials, got errors={x!r}, trials={n!r}")
    return xf, nf


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ConfigError("alpha", f"must lie in (0, 1) (0.05 gives a 95% interval), got {alpha!r}")
    return a


def clopper_pearson(x, n, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` interval for ``p`` from ``x`` successes in ``n`` trials.

    ``x`` may be non-integer (as for the effective counts of :func:`ber_block_ci`); the Beta quantiles are
    evaluated at the real arguments. ``n = 0`` gives the uninformative ``(0, 1)``. Returns floats in [0, 1].
    """
    x, n = _check_counts(x, n)
    a = _check_alpha(alpha)
    if n == 0:
        return 0.0, 1.0
    lo = 0.0 if x <= 0 else float(_st.beta.ppf(a / 2, x, n - x + 1))
    hi = 1.0 if x >= n else float(_st.beta.ppf(1 - a / 2, x + 1, n - x))
    return lo, hi


def wilson(x, n, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score two-sided ``1 - alpha`` interval for ``p`` (see module docstring). ``n = 0`` -> (0, 1)."""
    x, n = _check_counts(x, n)
    a = _check_alpha(alpha)
    if n == 0:
        return 0.0, 1.0
    z = float(_st.norm.ppf(1 - a / 2))
    p = x / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_ci(x, n, alpha: float = 0.05, method: str = "clopper-pearson") -> tuple[float, float]:
    """Dispatch to :func:`clopper_pearson` or :func:`wilson` (``method`` in :data:`CI_METHODS`)."""
    check_choice("ci_method", method, CI_METHODS)
    return clopper_pearson(x, n, alpha) if method == "clopper-pearson" else wilson(x, n, alpha)


def design_effect(bit_errors, bit_errors_sq, blocks, bits_per_block) -> float:
    r"""Kish design effect of the BER estimator with the block as the independent unit.

    Args: ``bit_errors = sum_j e_j``, ``bit_errors_sq = sum_j e_j^2`` over ``blocks`` = N blocks of
    ``bits_per_block`` = k bits. Returns ``d = Var_block(p_hat) / Var_iid(p_hat)`` (1 for independent bits;
    up to ``k`` when all bits of a block err together). Returns ``nan`` when undefined (N < 2, p in {0, 1}).
    """
    N = float(blocks)
    k = float(bits_per_block)
    if N < 2 or k <= 0:
        return float("nan")
    s1, s2 = float(bit_errors), float(bit_errors_sq)
    p = s1 / (N * k)
    if p <= 0.0 or p >= 1.0:
        return float("nan")
    # sum_j (e_j - k p)^2 = s2 - 2 k p s1 + N k^2 p^2 = s2 - s1^2 / N
    ss = max(s2 - s1 * s1 / N, 0.0)
    var_block = ss / (N * (N - 1) * k * k)
    var_iid = p * (1 - p) / (N * k)
    return var_block / var_iid


def ber_block_ci(bit_errors, bit_errors_sq, blocks, bits_per_block, alpha: float = 0.05,
                 method: str = "clopper-pearson") -> tuple[float, float]:
    """BER interval that accounts for the correlation of bits within a block (module docstring).

    The binomial interval ``method`` is evaluated with ``n_eff = N k / d`` effective trials (``d`` from
    :func:`design_effect`) and ``x_eff = p_hat n_eff`` effective errors. ``d`` is clipped to ``[1, k]``: anti-correlation is not credited
    (conservative), and no estimator can have fewer than ``N`` independent units. With zero errors (``d``
    undefined) the block count ``N`` is used as the number of independent trials -- conservative, as the
    errors might all fall in one block.
    """
    N = int(blocks)
    k = int(bits_per_block)
    if N < 0 or k <= 0:
        raise ConfigError("blocks", f"need blocks >= 0 and bits_per_block > 0, got {blocks!r}, {bits_per_block!r}")
    n = N * k
    if n == 0:
        return 0.0, 1.0
    p = float(bit_errors) / n
    d = design_effect(bit_errors, bit_errors_sq, N, k)
    if not np.isfinite(d):
        d = float(k) if p <= 0.0 or p >= 1.0 else 1.0
    d = min(max(d, 1.0), float(k))
    n_eff = n / d
    return binomial_ci(p * n_eff, n_eff, alpha, method)
