"""Attacks (metacomm.channels.attacks): every perturbation uses exactly its PSR budget, attacks are reproducible per
seed, FGM equals its closed form on a linear decoder, PGD never does worse than FGM, PGD-L2 equals torchattacks'
PGDL2 step for step (when torchattacks is installed), and the attacks run inside torch.func.vmap."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metacomm import ConfigError
from metacomm.channels import attacks as A
from metacomm.channels.base import complex_normal
from metacomm.codecs.autoencoder import Autoencoder

PSR_DB = -6.0


def _setup(seed=0, B=64):
    torch.manual_seed(seed)
    ae = Autoencoder(4, 7, hidden=16)  # odd n with real uses: 7 real dims on 4 complex samples
    for p in ae.parameters():
        p.requires_grad_(False)
    book = ae.encoder.codebook()
    g = torch.Generator().manual_seed(seed)
    m = torch.randint(0, 16, (B,), generator=g)
    x = book[m]
    y = x + 0.3 * complex_normal(x.shape, generator=g)
    return ae, book, A.Support.from_codebook(book), m, x, y, g


def test_support_of_the_ae74_has_its_seven_reals_and_round_trips():
    _, book, sup, _, x, _, _ = _setup()
    assert sup.dim == 7 and sup.num_samples == 4 and not bool(sup.mask[3, 1])
    assert torch.equal(sup.to_complex(sup.to_reals(x)), x)  # x is zero outside its support


@pytest.mark.parametrize("kind", A.ATTACKS)
def test_every_perturbation_has_exactly_its_psr(kind):
    ae, book, sup, m, x, y, g = _setup()
    uni = A.uap_sadeghi(ae.block_logits, y[:32], m[:32], A.budget(x, PSR_DB, universal=True), sup,
                        num_classes=16) if kind in A.UNIVERSAL else None
    p = A.perturb(kind, logits_fn=ae.block_logits, x=x, y=y, labels=m, psr_db=PSR_DB, support=sup, generator=g,
                  universal=uni)
    assert p.shape == x.shape
    # definition: ||p||^2 / ||x||^2 per block (every block of a block-normalised codec has ||x||^2 = n_c = 3.5)
    ratio = p.abs().square().sum(-1) / x.abs().square().sum(-1)
    assert torch.allclose(ratio, torch.full_like(ratio, 10 ** (PSR_DB / 10)), rtol=1e-5)
    assert torch.all(p[:, 3].imag == 0)  # nothing on the unused dimension


def test_uap_pgd_has_exactly_its_psr():
    ae, book, sup, m, x, y, g = _setup()
    u = A.uap_pgd(ae.block_logits, y, m, A.budget(x, -10.0, universal=True), sup, steps=5)
    assert math.isclose(float(u.abs().square().sum()), 3.5 * 10 ** (-1.0), rel_tol=1e-5)


@pytest.mark.parametrize("kind", ["pgd-l2", "pgd-linf", "uap-shifted", "jam-gauss", "jam-tone"])
def test_random_attacks_are_reproducible_per_seed(kind):
    ae, book, sup, m, x, y, _ = _setup()
    uni = book[0] * 0.3

    def run(seed):
        return A.perturb(kind, logits_fn=ae.block_logits, x=x, y=y, labels=m, psr_db=PSR_DB, support=sup,
                         generator=torch.Generator().manual_seed(seed), universal=uni)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_fgm_equals_its_closed_form_on_a_linear_decoder():
    torch.manual_seed(1)
    D, M, B = 6, 5, 40
    W, b = torch.randn(M, D, dtype=torch.float64), torch.randn(M, dtype=torch.float64)
    sup = A.Support.full(3)
    y = complex_normal((B, 3), generator=torch.Generator().manual_seed(2), dtype=torch.complex128)
    m = torch.randint(0, M, (B,), generator=torch.Generator().manual_seed(3))

    def logits(yy):  # features: [Re y0, Im y0, Re y1, ...]
        return sup.to_reals(yy) @ W.T + b

    radius = torch.rand(B, dtype=torch.float64) + 0.1
    p = A.fgm(logits, y, m, radius, sup)
    # closed form: d CE / d r = W^T (softmax(W r + b) - onehot(m)); FGM = radius * g / ||g||
    r = torch.view_as_real(y).reshape(B, 6)
    g = (torch.softmax(r @ W.T + b, -1) - F.one_hot(m, M).double()) @ W
    expect = radius[:, None] * g / g.norm(dim=-1, keepdim=True)
    assert torch.allclose(torch.view_as_real(p).reshape(B, 6), expect, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_start", [False, True])
def test_pgd_never_does_worse_than_fgm(with_start):
    ae, book, sup, m, x, y, g = _setup(B=256)
    rad = A.budget(x, PSR_DB)
    start = A.random_unit((x.shape[0], sup.dim), g) if with_start else None
    ce = lambda p: A.block_ce(ae.block_logits, y + p, m)  # noqa: E731
    l_fgm = ce(A.fgm(ae.block_logits, y, m, rad, sup))
    l_pgd = ce(A.pgd_l2(ae.block_logits, y, m, rad, sup, steps=5, start=start))
    assert torch.all(l_pgd >= l_fgm - 1e-6)
    assert float(l_pgd.mean()) > float(l_fgm.mean())  # and it does find more on average


def test_pgd_linf_returns_a_vertex_of_its_box():
    ae, book, sup, m, x, y, g = _setup()
    p = A.perturb("pgd-linf", logits_fn=ae.block_logits, x=x, y=y, labels=m, psr_db=PSR_DB, support=sup)
    eps = A.budget(x, PSR_DB) / math.sqrt(7)
    assert torch.allclose(sup.to_reals(p).abs(), eps[:, None].expand(-1, 7), rtol=1e-5)


def test_cyclic_shift_rolls_the_support_coordinates():
    sup = A.Support(torch.tensor([[True, True], [True, False]]))
    u = sup.to_complex(torch.tensor([1.0, 2.0, 3.0]))
    out = A.cyclic_shift(u, sup, torch.tensor([0, 1, 2]))
    assert torch.equal(sup.to_reals(out), torch.tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [2.0, 3.0, 1.0]]))


def test_attacks_run_inside_vmap_and_match_the_loop():
    ae, book, sup, m, x, y, g = _setup(B=12)
    start = A.random_unit((12, sup.dim), g)
    rad = A.budget(x, PSR_DB)

    def one(yy, mm, rr, ss):
        return A.pgd_l2(ae.block_logits, yy, mm, rr, sup, steps=3, start=ss)

    batched = torch.vmap(one)(y.reshape(3, 4, 4), m.reshape(3, 4), rad.reshape(3, 4), start.reshape(3, 4, 7))
    loop = torch.stack([one(y.reshape(3, 4, 4)[i], m.reshape(3, 4)[i], rad.reshape(3, 4)[i],
                            start.reshape(3, 4, 7)[i]) for i in range(3)])
    assert torch.allclose(batched, loop, atol=1e-6)


def test_bad_psr_is_a_config_error():
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ConfigError, match="psr_db"):
            A.psr_linear(bad)


class _Wrapped(nn.Module):
    """torchattacks works on images in [0, 1]: map t in [0, 1]^D to y = y0 + c (t - 1/2) on the support."""

    def __init__(self, ae, y0, sup, c):
        super().__init__()
        self.ae, self.y0, self.sup, self.c = ae, y0, sup, c

    def forward(self, t):
        return self.ae.block_logits(self.y0 + self.sup.to_complex(self.c * (t.flatten(1) - 0.5)))


def test_pgd_l2_matches_torchattacks_pgdl2():
    torchattacks = pytest.importorskip("torchattacks")
    ae, book, sup, m, x, y, g = _setup(B=32)
    r = 0.8  # one radius for every block (torchattacks takes a scalar eps)
    c = 20.0  # the box [0, 1] never binds: |p| <= r << c/2
    model = _Wrapped(ae, y, sup, c).eval()
    atk = torchattacks.PGDL2(model, eps=r / c, alpha=0.2 * r / c, steps=6, random_start=False)
    t_adv = atk(torch.full((32, 1, 1, sup.dim), 0.5), m)  # image-shaped [B, C, H, W]
    ref = c * (t_adv.flatten(1) - 0.5)
    ours = A.pgd_l2(ae.block_logits, y, m, torch.full((32,), r), sup, steps=6, step_size=0.2, keep_best=False,
                    full_budget=False)
    assert torch.allclose(sup.to_reals(ours), ref, atol=2e-5)
