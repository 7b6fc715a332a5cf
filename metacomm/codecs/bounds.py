r"""Shannon's 1959 sphere-packing lower bound on the block error rate of an (n, k) code over AWGN.

Setting (the O'Shea & Hoydis convention of :class:`~metacomm.codecs.autoencoder.Autoencoder` with
``real_uses=True`` and ``power="block"``): :math:`M = 2^k` codewords in :math:`\mathbb R^n` (``n`` real channel
uses), every codeword on the sphere :math:`\|\mathbf x\|^2 = n`, i.i.d. noise :math:`\mathcal N(0, \sigma^2)`
per real dimension with

.. math:: \sigma^2 = \frac{1}{2 R\, E_b/N_0}, \qquad R = k/n \text{ bits per real use}

(equivalently ``N0 = 1/(rate * Eb/N0)`` per complex use with ``rate = 2k/n`` and Es = 1 per complex use, the
library's convention). Shannon (1959, "Probability of error for optimal codes in a Gaussian channel", Bell Syst.
Tech. J. 38) showed that for *any* such equal-energy code the ML block error probability is at least the
probability that the noise moves the received vector out of a circular cone of half-angle :math:`\theta_n`
around the sent codeword, where the cone's solid angle is the fraction :math:`1/M` of the whole sphere:

.. math::
    \frac{\Omega_n(\theta_n)}{\Omega_n(\pi)} = \tfrac12 I_{\sin^2\theta_n}\!\left(\tfrac{n-1}2, \tfrac12\right)
    = \frac1M \quad (\theta_n \le \pi/2),

.. math::
    P_{\rm SP59} = \Pr[\angle(\mathbf x + \mathbf z, \mathbf x) > \theta_n]
    = Q\!\left(\tfrac{\sqrt n}{\sigma}\right) + \int_{-\sqrt n}^{\infty} \frac{e^{-u^2/2\sigma^2}}{\sqrt{2\pi}\sigma}
      \Pr\!\left[\chi^2_{n-1} > \left(\tfrac{(\sqrt n + u)\tan\theta_n}{\sigma}\right)^2\right] du,

(:math:`u` the noise along :math:`\mathbf x`, :math:`\chi^2_{n-1}` the normalised noise energy orthogonal to it;
:math:`I` the regularised incomplete beta function). For ``n = 2, k = 2`` the cone is the QPSK decision region
(:math:`\theta = \pi/4`) and the bound *equals* uncoded QPSK's block error rate
:math:`1 - (1 - Q(\sqrt{2E_b/N_0}))^2`, which the tests use as an independent check.

A Monte-Carlo BLER of a learned equal-energy code that falls *below* this bound means an Eb/N0 <-> sigma
bookkeeping error. (Codes with only an *average* power constraint are not covered: they may place codewords
inside the sphere; use ``power="block"`` for this check.)
"""

from __future__ import annotations

import math

from metacomm._validation import ConfigError, check_finite, check_positive_int

__all__ = ["sphere_packing_bound", "cone_half_angle"]


def cone_half_angle(n: int, num_codewords: int) -> float:
    r"""Half-angle :math:`\theta_n` (radians) of the cone in :math:`\mathbb R^n` whose solid angle is the
    fraction ``1 / num_codewords`` of the sphere (``n >= 2``, ``num_codewords >= 2``)."""
    from scipy.optimize import brentq
    from scipy.special import betainc

    n = check_positive_int("n", n)
    if n < 2:
        raise ConfigError("n", f"the sphere-packing cone needs n >= 2 real dimensions, got {n}")
    m = check_positive_int("num_codewords", num_codewords)
    if m < 2:
        raise ConfigError("num_codewords", f"needs at least 2 codewords, got {m}")
    target = 1.0 / m

    def frac(theta: float) -> float:
        return 0.5 * float(betainc((n - 1) / 2.0, 0.5, math.sin(theta) ** 2)) - target

    return float(brentq(frac, 1e-12, math.pi / 2, xtol=1e-15, rtol=4 * 2.0 ** -52, maxiter=200))


def sphere_packing_bound(n: int, k: int, ebno_db: float) -> float:
    r"""Shannon's SP59 lower bound on the BLER of any ``(n, k)`` equal-energy code at ``ebno_db`` (dB).

    ``n`` real channel uses, ``k`` information bits (``M = 2^k <= 2^n``... any ``k >= 1``); see the module
    docstring for the model and the formula. Returns a probability in [0, 1].
    """
    from scipy.integrate import quad
    from scipy.stats import chi2, norm

    n = check_positive_int("n", n)
    k = check_positive_int("k", k)
    eb = check_finite("ebno_db", ebno_db)
    if n < 2:
        raise ConfigError("n", f"the sphere-packing bound here needs n >= 2 real dimensions, got {n}")
    theta = cone_half_angle(n, 2 ** k)
    sigma = math.sqrt(1.0 / (2.0 * (k / n) * 10.0 ** (eb / 10.0)))
    a = math.sqrt(n)
    t = math.tan(theta)

    def integrand(u: float) -> float:
        return norm.pdf(u, scale=sigma) * chi2.sf(((a + u) * t / sigma) ** 2, n - 1)

    hi = 40.0 * sigma
    # the integrand is concentrated where the cone boundary is reached: split at a few points for quad
    pts = [p for p in (-a, -a / 2, 0.0, 5 * sigma) if -a < p < hi]
    val, _ = quad(integrand, -a, hi, points=pts or None, limit=400, epsabs=0.0, epsrel=1e-10)
    return float(min(1.0, max(0.0, norm.sf(a / sigma) + val)))
