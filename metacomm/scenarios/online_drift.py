r"""Scenario ``online-drift``: the meta-learned autoencoder that runs on drifting channels.

Setting of Park, Simeone & Kang (SPAWC 2020, online setting): ``k = 8`` bits per block, ``n = 8`` complex
channel uses, 3-tap Rayleigh multipath with taps :math:`h_\ell \sim \mathcal{CN}(0, 1/3)` convolved over the
``n`` uses (``mode="truncate"``), Eb/N0 = 10 dB (:math:`N_0 = 1/(\rho\,E_b/N_0)` with :math:`\rho = k/n = 1`
bit per complex use, so Es/N0 = 10 dB too), run-time adaptation of the *decoder* with 8-16 pilot messages and
one SGD step at rate 0.1.

Codec (:class:`DriftAutoencoder`): the transmitter is the (n, k) autoencoder encoder of
:class:`metacomm.codecs.autoencoder.Autoencoder` (``real_uses=False``: one-hot(256) -> Linear(256, H) -> ReLU ->
Linear(H, 16) -> :math:`\|x\|^2 = n`). The receiver is a *channel-aware template decoder*
(:class:`TemplateDecoder`) whose fast weights are its belief about the channel:

.. math::  z_m(y) = -\beta\, \big\| y - \mathbf H(\hat h)\, t_m \big\|^2 + c_m, \qquad m = 0..2^k-1,

with templates :math:`t_m \in \mathbb C^n` (the receiver's model of the codewords; tied to the transmitter's
codebook in the last meta-training phase), learned biases :math:`c_m`, a learned inverse temperature
:math:`\beta = e^{\lambda}` and the taps belief :math:`\hat h = s\,W\theta_h` (:math:`\theta_h` = the ``taps``
parameter, :math:`2L` reals, ``s = e^{\sigma}`` a learned scale, :math:`W` a learned :math:`2L \times 2L` warp),
:math:`\mathbf H(\hat h)` the ``n x n`` lower-triangular Toeplitz convolution matrix. With :math:`t_m` = the
codebook, :math:`\hat h = h`, :math:`\beta = 1/N_0` and :math:`c = 0` this is exactly the ML decoder (the genie).

Adaptation (the fast weights are :math:`\theta_h` only). The default inner loss is the *generative pilot fit*
(:meth:`TemplateDecoder.pilot_fit_loss`)

.. math:: \mathcal L_{\rm fit}(\theta_h) = \frac{1}{Pn}\sum_{p=1}^{P} \|y_p - \mathbf H(\hat h)\,t_{m_p}\|^2
          = \frac{1}{Pn}\|y - X\hat h\|^2,

exactly quadratic in :math:`\theta_h` (:math:`X` the real-ified stack of the pilots' convolution matrices), so one
SGD step at rate :math:`\alpha` from *any* start :math:`\theta_0` is

.. math:: \hat h_1 - \hat h_{LS} = \big(I - \tfrac{2\alpha}{Pn}\, s^2 W W^\top X^\top X\big)(\hat h_0 - \hat h_{LS}),

a contraction towards the least-squares channel fit :math:`\hat h_{LS}`. MAML meta-learns the initialisation
and the preconditioner :math:`s^2 W W^\top` (a T-Net / meta-curvature warp: frozen in the inner loop, learned in
the outer loop; Lee & Choi 2018, Park & Oliva 2019) so that the step lands close to :math:`\hat h_{LS}` for the
pilot Grams it meets -- the truncated convolution alone makes :math:`X^\top X` non-scalar (tap :math:`\ell`
sees :math:`n-\ell` symbols), which a scalar rate cannot undo. Because the step contracts from any start, warm
starts (previous frame's belief) beat restarting from the meta-init when the channel drifts slowly. The
alternative inner loss ``"ce"`` (pilot cross-entropy; at :math:`\hat h = 0` its gradient is the matched filter)
saturates once the decoder decodes the pilots right, so warm starts stop tracking; it is kept for comparison.
This is the role of Park et al.'s RTN layer (a receiver-side channel model the adaptation acts on) in a form
whose fast weights are the ``2L`` channel reals, which the adaptive codec adapts for a thousand links at once
cheaply. ``decoder.block_logits(y)`` is ``[B, 2^k]``; ``decoder(y, no)`` gives exact bit LLRs
(``ln P(b=1)/P(b=0)``) from them.

Meta-training (:func:`meta_train`) reuses the ``fading-ae`` machinery
(:class:`metacomm.scenarios.fewshot_fading.FadingAEScenario`: its objective, task samplers and few-shot
evaluation) and the engine's :class:`~metacomm.adaptation.MetaTrainer` (second-order MAML, inner loop on
``decoder.taps``, tasks = channels drawn from a large training set, ``messages_per_task`` support = query
messages), in two phases (joint, then templates tied to the codebook; see :func:`meta_train`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from metacomm._validation import ConfigError, check_finite, check_positive, check_positive_int
from metacomm.artefacts import load_checkpoint, save_checkpoint
from metacomm.codecs.autoencoder import AEEncoder
from metacomm.codecs.detection import convolve_codewords, ml_block_logits  # noqa: F401 (ml_block_logits: moved)
from metacomm.codecs.learned_base import (
    bit_llrs_from_block_logits,
    index_to_bits,
    message_bit_table,
    reset_linear_,
)
from metacomm.scenarios.fewshot_fading import FadingAEConfig, FadingAEObjective, FadingAEScenario

__all__ = ["OnlineDriftConfig", "TemplateDecoder", "DriftAutoencoder", "OnlineDriftObjective",
           "OnlineDriftScenario", "meta_train", "save_meta", "load_meta", "FORMAT", "NAME", "INNER_LOSSES"]

NAME = "online-drift"
FORMAT = "metacomm-online-meta/1"
INNER_LOSSES = ("ce", "pilot-fit")


@dataclass
class OnlineDriftConfig:
    """Settings of the drift autoencoder and its meta-training (defaults = Park et al. SPAWC 2020).

    ``k`` bits, ``n`` complex uses, ``num_taps`` channel taps (also the decoder's model order), ``ebno_db``
    [dB] training Eb/N0, ``hidden`` encoder width, ``messages_per_task`` support (= query) messages per task
    (pilots at meta-training time), ``inner_lr``/``inner_steps`` the run-time rule the initialisation is
    meta-trained for, ``adapt`` the adapted parameter set (adapt spec), ``inner_loss`` the pilot loss of the inner
    loop (``"pilot-fit"`` or ``"ce"``), ``num_train_channels`` the size of the
    fixed training-channel set.
    """

    k: int = 8
    n: int = 8
    num_taps: int = 3
    ebno_db: float = 10.0
    hidden: int = 64
    messages_per_task: int = 16
    inner_lr: float = 0.1
    inner_steps: int = 1
    adapt: str = "decoder.taps"
    inner_loss: str = "pilot-fit"
    num_train_channels: int = 20000
    channel_seed: int = 2020
    test_seed: int = 4242

    def validate(self) -> OnlineDriftConfig:
        for f in ("k", "n", "num_taps", "hidden", "messages_per_task", "inner_steps", "num_train_channels"):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        if self.k > 12:
            raise ConfigError("k", f"the template decoder scores all 2^k messages; k must be <= 12, got {self.k}")
        self.ebno_db = check_finite("ebno_db", self.ebno_db)
        self.inner_lr = check_positive("inner_lr", self.inner_lr)
        if not isinstance(self.adapt, str):
            raise ConfigError("adapt", f"expected an adapt spec string, got {self.adapt!r}")
        if self.inner_loss not in INNER_LOSSES:
            raise ConfigError("inner_loss", f"unknown inner loss {self.inner_loss!r}; allowed: "
                                            f"{', '.join(INNER_LOSSES)}")
        return self


class TemplateDecoder(nn.Module):
    r"""Channel-aware template decoder (see the module docstring for the metric).

    Parameters (all trainable; the default fast weights are ``taps``): ``taps`` float ``[2L]`` (:math:`\theta_h`
    as ``[Re h_0..Re h_{L-1}, Im h_0..Im h_{L-1}]`` after warping), ``warp`` float ``[2L, 2L]`` (:math:`W`,
    meta-learned, frozen during adaptation; identity at init), ``templates`` float ``[2^k, 2n]`` (``[Re | Im]``),
    ``bias`` ``[2^k]``, ``log_beta`` and ``log_scale`` scalars. The channel belief is
    :math:`\hat h = s\, W \theta_h` (as ``2L`` reals).

    ``y`` complex ``[B, n]`` -> ``block_logits(y)`` float ``[B, 2^k]``; ``forward(y, no)`` -> bit LLRs
    ``[B, k]``. ``no`` is accepted for the codec protocol and ignored (:math:`\beta` is learned at the training
    Eb/N0). :meth:`pilot_fit_loss` is the generative pilot loss used by the ``pilot-fit`` inner loop.
    """

    def __init__(self, k: int, n: int, num_taps: int):
        super().__init__()
        self.k, self.n, self.num_taps = k, n, num_taps
        self.taps = nn.Parameter(torch.zeros(2 * num_taps))
        self.warp = nn.Parameter(torch.eye(2 * num_taps))
        self.templates = nn.Parameter(torch.zeros(2 ** k, 2 * n))
        self.bias = nn.Parameter(torch.zeros(2 ** k))
        self.log_beta = nn.Parameter(torch.zeros(()))
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.register_buffer("bit_table", message_bit_table(k), persistent=False)

    def channel_estimate(self) -> torch.Tensor:
        r"""The decoder's current channel belief :math:`\hat h = s\,W\theta_h`, complex ``[L]``."""
        L = self.num_taps
        h = (self.warp @ self.taps) * self.log_scale.exp()
        return torch.complex(h[:L], h[L:])

    def template_symbols(self) -> torch.Tensor:
        """The receiver's codeword model :math:`t_m`, complex ``[2^k, n]``."""
        return torch.complex(self.templates[:, : self.n], self.templates[:, self.n:])

    def expected_rx(self) -> torch.Tensor:
        r""":math:`\mathbf H(\hat h) t_m` for every message, complex ``[2^k, n]``."""
        return convolve_codewords(self.template_symbols(), self.channel_estimate())

    def _check_y(self, y):
        if not torch.is_complex(y) or y.shape[-1] != self.n:
            raise ConfigError("y", f"expected complex received samples [batch, {self.n}], got {y.dtype} "
                                   f"{tuple(y.shape)}")

    def pilot_fit_loss(self, y: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        r"""Generative pilot loss: mean squared misfit of the known pilots under the channel belief,

        .. math:: \mathcal L_{\rm fit}(\theta_h) = \frac1{P n} \sum_{p=1}^{P} \big\| y_p - \mathbf H(\hat h)
                  t_{m_p} \big\|^2   \quad [\text{energy per channel use, units of } E_s],

        ``y`` complex ``[P, n]``, ``msg`` int64 ``[P]``. It is the negative Gaussian log-likelihood of the pilots
        up to constants, exactly quadratic in :math:`\theta_h`: its gradient at any :math:`\theta_h` is
        :math:`\frac{2s}{Pn} W^\top \Re\{\mathbf A\}(\hat h - \hat h_{LS})` (``A`` the real-ified pilot Gram
        :math:`\sum_p \mathbf T_p^H \mathbf T_p`), so one SGD step is a contraction towards the
        least-squares fit from *any* start (meta-init or warm start), preconditioned by the meta-learned
        :math:`s^2 W W^\top` (T-Net / meta-curvature, Lee & Choi 2018; Park & Oliva 2019). Unlike the
        cross-entropy, it does not saturate once the decoder is right, so warm starts keep tracking.
        """
        self._check_y(y)
        r = convolve_codewords(self.template_symbols()[msg], self.channel_estimate())  # [P, n]
        return (y - r).abs().square().sum(-1).mean() / self.n

    def block_logits(self, y: torch.Tensor) -> torch.Tensor:
        self._check_y(y)
        r = self.expected_rx()  # [M, n]
        # ||y - r_m||^2 = ||y||^2 - 2 Re<y, r_m> + ||r_m||^2; the ||y||^2 term is common to all m.
        cross = torch.view_as_real(y).flatten(-2) @ torch.view_as_real(r).flatten(-2).t()  # Re <y, r_m>
        dist = -2.0 * cross + r.abs().square().sum(-1)
        return -self.log_beta.exp() * dist + self.bias

    def forward(self, y: torch.Tensor, no=None) -> torch.Tensor:
        return bit_llrs_from_block_logits(self.block_logits(y), self.bit_table.to(y.device))

    def decide_block(self, y: torch.Tensor) -> torch.Tensor:
        return self.block_logits(y).argmax(-1)


class DriftAutoencoder(nn.Module):
    """The online-drift codec: AE encoder (Park et al., complex uses) + :class:`TemplateDecoder`.

    ``encoder(bits [B,k]) -> complex [B,n]`` (Es = 1 per use), ``encoder.forward_index(msg)``,
    ``encoder.codebook()`` ``[2^k, n]``; ``decoder(y, no) -> LLRs [B,k]``, ``decoder.block_logits(y)``;
    ``decide(y, no)`` -> bits of the arg-max block. ``num_info_bits = k``, ``num_channel_uses = n``,
    ``rate = k / n``.
    """

    def __init__(self, k: int = 8, n: int = 8, num_taps: int = 3, hidden: int = 64):
        super().__init__()
        self.encoder = AEEncoder(k, n, real_uses=False, hidden=hidden, num_hidden_layers=1, power="block")
        self.decoder = TemplateDecoder(k, n, num_taps)
        self.num_info_bits, self.num_channel_uses = k, n
        self._config = dict(k=k, n=n, num_taps=num_taps, hidden=hidden)

    @property
    def rate(self) -> float:
        return self.num_info_bits / self.num_channel_uses

    def config(self) -> dict:
        return dict(self._config)

    def block_logits(self, y):
        return self.decoder.block_logits(y)

    def decide(self, y, no=None):
        return index_to_bits(self.decoder.decide_block(y), self.num_info_bits, dtype=y.real.dtype)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Encoder: PyTorch's Linear init from ``generator``; decoder: templates = the initial codebook (so the
        decoder starts matched to its encoder), zero taps belief and bias, :math:`\\beta = s = 1`."""
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear):
                reset_linear_(m, generator)
        book = self.encoder.codebook()
        d = self.decoder
        d.templates.copy_(torch.cat([book.real, book.imag], dim=-1))
        d.taps.zero_()
        d.warp.copy_(torch.eye(d.warp.shape[0]))
        d.bias.zero_()
        d.log_beta.zero_()
        d.log_scale.zero_()


class OnlineDriftObjective(FadingAEObjective):
    r"""The ``fading-ae`` objective (cross-entropy through the multipath channel; query loss and statistics)
    with a choice of *inner* loss: ``"ce"`` -- the same cross-entropy on the pilots; ``"pilot-fit"`` -- the
    decoder's generative pilot loss :meth:`TemplateDecoder.pilot_fit_loss` (same received pilots)."""

    def __init__(self, channel, adapt="all", inner: str = "pilot-fit"):
        super().__init__(channel, adapt)
        self.inner = inner

    def inner_loss(self, model, support):
        if self.inner == "ce":
            return self.loss(model, support)[0]
        msg = support["msg"]
        x = model.encoder.forward_index(msg)
        taps = support["taps"].unsqueeze(0).expand(msg.shape[0], -1)
        y = self.channel(x, support["no"], state={"taps": taps}, noise=support["noise"])
        return model.decoder.pilot_fit_loss(y, msg)


class OnlineDriftScenario(FadingAEScenario):
    """The ``fading-ae`` scenario machinery (objective, task samplers, :meth:`evaluate`) with the drift geometry
    and the :class:`DriftAutoencoder` codec. :param config: :class:`OnlineDriftConfig`."""

    name = NAME

    def __init__(self, config: OnlineDriftConfig | None = None, device="cpu"):
        self.drift_config = (config or OnlineDriftConfig()).validate()
        c = self.drift_config
        super().__init__(FadingAEConfig(k=c.k, n=c.n, num_taps=c.num_taps, ebno_db=c.ebno_db,
                                        num_train_channels=c.num_train_channels, messages_per_task=c.messages_per_task,
                                        hidden=c.hidden, channel_seed=c.channel_seed, test_seed=c.test_seed),
                         device=device)
        self.objective = OnlineDriftObjective(self.channel, c.adapt, c.inner_loss)

    def config_dict(self) -> dict:
        return asdict(self.drift_config)

    def build_model(self, seed: int) -> DriftAutoencoder:
        c = self.drift_config
        model = DriftAutoencoder(c.k, c.n, c.num_taps, c.hidden)
        model.reset_parameters(torch.Generator().manual_seed(int(seed)))
        return model.to(self.device)


def meta_train(config: OnlineDriftConfig | None = None, *, meta_steps: int = 1500, matched_steps: int = 0,
               meta_batch: int = 20, outer_lr: float = 3e-3, algo: str = "maml", seed: int = 0, device="cpu",
               progress: bool = False):
    r"""Meta-train the drift codec; returns ``(scenario, model, trainer)`` (the trainer of the last phase).

    Phase 1 (``meta_steps``): the outer loop (Adam at ``outer_lr``) trains every parameter (encoder, templates,
    taps initialisation, warp, temperature, scale); the inner loop adapts ``config.adapt`` (default
    ``"decoder.taps"``) with ``config.inner_steps`` SGD steps at ``config.inner_lr`` on ``messages_per_task``
    pilot messages, descending ``config.inner_loss``.

    Phase 2 (``matched_steps`` > 0): the receiver's templates are set to the transmitter's codebook,
    :math:`t_m = c_m` (a receiver knows its transmitter's code, so with :math:`\hat h = h`,
    :math:`\beta = 1/N_0` and :math:`c = 0` the decoder *is* the ML decoder), encoder and templates are frozen,
    and meta-training continues on the adaptation machinery only (taps initialisation, warp, scale,
    temperature, biases). Without it the jointly learned templates lag the moving codebook and cost about 1 dB.
    """
    from metacomm.adaptation import MetaConfig, MetaTrainer

    sc = OnlineDriftScenario(config, device=device)
    c = sc.drift_config
    model = sc.build_model(seed)
    cfg = MetaConfig(algo=algo, inner_steps=c.inner_steps, inner_lr=c.inner_lr, outer_lr=outer_lr,
                     meta_batch=meta_batch, adapt=c.adapt)
    trainer = MetaTrainer(model, sc.objective, sc.sample_tasks, cfg, seed=seed, device=device)
    trainer.train(meta_steps, progress=progress)
    if matched_steps > 0:
        with torch.no_grad():
            book = model.encoder.codebook()
            model.decoder.templates.copy_(torch.cat([book.real, book.imag], dim=-1))
        for p in list(model.encoder.parameters()) + [model.decoder.templates]:
            p.requires_grad_(False)
        trainer = MetaTrainer(model, sc.objective, sc.sample_tasks, cfg, seed=seed + 1, device=device)
        trainer.train(matched_steps, progress=progress)
        for p in model.parameters():
            p.requires_grad_(True)
    model.meta_inner_loss = c.inner_loss  # AdaptiveCodec's default pilot loss for this meta-init
    return sc, model, trainer


def save_meta(path, model: DriftAutoencoder, config: OnlineDriftConfig, meta: dict | None = None) -> None:
    """Write a small checkpoint: ``{"kind": FORMAT, "config": ..., "model": state_dict, "meta": ...}``."""
    payload = {"kind": FORMAT, "scenario": NAME, "config": asdict(config),
               "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "meta": dict(meta or {})}
    save_checkpoint(path, payload, kind="metacomm-online-meta", field="out")


def load_meta(path, *, device="cpu", field: str = "checkpoint") -> tuple[DriftAutoencoder, OnlineDriftConfig, dict]:
    """Read a checkpoint of :func:`save_meta`: ``(model on device, config, whole dict)``; ConfigError naming
    ``field`` for a missing/unreadable/foreign file. The model's ``meta_inner_loss`` attribute records the
    inner loss it was meta-trained with (the default pilot loss of :class:`~metacomm.adaptation.AdaptiveCodec`)."""
    p = str(path)
    ck = load_checkpoint(p, kinds="metacomm-online-meta", field=field)
    try:
        cfg = OnlineDriftConfig(**ck["config"]).validate()
    except TypeError as e:
        raise ConfigError(field, f"{p}: bad config in checkpoint ({e})") from None
    model = DriftAutoencoder(cfg.k, cfg.n, cfg.num_taps, cfg.hidden)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise ConfigError(field, f"{p}: weights do not fit the codec: {str(e).splitlines()[0][:160]}") from None
    model.meta_inner_loss = cfg.inner_loss  # AdaptiveCodec's default pilot loss for this meta-init
    return model.to(device), cfg, ck
