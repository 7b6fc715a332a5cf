r"""Scenario ``iq-demod``: meta-learning a 16-QAM demodulator that adapts to a new device from few pilots.

Setting of Park, Jang, Simeone & Kang, "Learning to demodulate from few pilots via offline and online
meta-learning" (IEEE TSP 2021), offline part:

* **Transmitter** of device :math:`d`: 16-QAM symbols :math:`s = s_I + j s_Q` with levels
  :math:`\{\pm1, \pm3\}/\sqrt{10}` (:math:`E_s = \mathbb E|s|^2 = 1`), distorted by the device's IQ imbalance
  (:func:`metacomm.channels.impairments.iq_imbalance`, the paper's equation)

  .. math::  s_I' = (1+\epsilon)(\cos\delta\, s_I - \sin\delta\, s_Q), \qquad
             s_Q' = (1-\epsilon)(\cos\delta\, s_Q - \sin\delta\, s_I),

  renormalised by :math:`1/\sqrt{1+\epsilon^2}` (unit average energy), with
  :math:`\epsilon = 0.15\,B_1`, :math:`\delta = 15°\,B_2`, :math:`B_{1,2} \sim \mathrm{Beta}(5, 2)` i.i.d. per
  device (:class:`~metacomm.channels.impairments.RandomIQImbalance`);
* **channel**, *after* the IQ imbalance: flat Rayleigh :math:`y = h\, s' + w`, :math:`h \sim \mathcal{CN}(0,1)`
  per device, constant over all its symbols (:class:`~metacomm.channels.fading.RayleighBlockFading`),
  :math:`w \sim \mathcal{CN}(0, N_0)`. ``snr_db`` is :math:`E_s/N_0` in dB (energy per *symbol*;
  :math:`N_0 = 10^{-\mathrm{snr\_db}/10}`); per bit, :math:`E_b/N_0 = E_s/N_0 - 10\log_{10} 4` dB
  (:math:`\approx 13.98` dB at the default 20 dB);
* **demodulator** (:class:`IQDemodulator`): an MLP :math:`[\Re y, \Im y] \to 10 \to 30 \to 30 \to 16` logits
  (softmax over the 16 symbols), cross-entropy loss; the symbol error rate (SER) is the arg-max error rate;
* **meta-training data**: ``num_train_devices = 1000`` devices, each with a fixed set of
  ``pilots_per_device = 160`` received pilots (symbols, IQ imbalance, channel *and noise* drawn once from
  ``channel_seed``: offline data). A task = one device; its support batch is ``support_pilots`` (16) of its
  160 pilots chosen at random, the query batch the next ``query_pilots`` of the same permutation (default: the
  rest of the device's pilots, at most 144 -- 144 for the default 16 support pilots);
* **meta-learning**: any algorithm of :mod:`metacomm.adaptation` (MAML, FOMAML, Reptile, Meta-SGD, ANIL), 1
  inner SGD step at 0.1, outer Adam :math:`10^{-3}`, 5 devices per meta-update (:attr:`IQDemodScenario.
  meta_defaults`);
  the support size should match the run-time pilot count ``P`` (``metacomm meta-train --support-pilots P``):
  Meta-SGD meta-trained per ``P`` (12000 updates) reaches SER 0.266 / 0.147 / 0.076 at ``P`` = 1 / 4 / 16
  after one step, against 0.338 / 0.185 / 0.135 for the LMMSE + ML reference;
* **run time** (:meth:`IQDemodScenario.evaluate`): each of ``num_test_devices`` *new* devices sends ``P``
  pilots (one fixed pilot set: groups of 16 pilots are random permutations of the constellation); the
  demodulator starts from the given initialisation and takes ``s`` gradient steps on the *same* ``P``
  pilots (step 1: SGD at the inner rate or Meta-SGD's learned rates; later steps: ``rest``, default Adam
  :math:`10^{-3}`); the SER after each number of steps is measured on fresh uniformly drawn symbols;
* **classical reference** (:meth:`IQDemodScenario.pilot_mmse_ml`): LMMSE estimate of :math:`h` from the
  ``P`` pilots (prior :math:`\mathcal{CN}(0,1)`, IQ imbalance ignored),
  :math:`\hat h = \sum_p x_p^* y_p / (\sum_p |x_p|^2 + N_0)`, then ML (minimum-distance) detection
  :math:`\hat m = \arg\min_m |y - \hat h\, c_m|^2` over the ideal 16-QAM points :math:`c_m`.

All randomness is drawn from explicit generators outside the loss (see :mod:`metacomm.adaptation.objective`).
The activation of the hidden layers is a setting (``activation``, default ``"tanh"``); the paper's text
gives the layer widths, and tanh is this module's choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metacomm._validation import (
    ConfigError,
    check_choice,
    check_db,
    check_int,
    check_memory,
    check_model_memory,
    check_nonneg,
    check_positive_int,
    mlp_params,
)
from metacomm.adaptation import SGD, Adam, MetaObjective, TaskBatch, call
from metacomm.adaptation.finetune import finetune_batched
from metacomm.channels.base import complex_normal
from metacomm.channels.fading import RayleighBlockFading
from metacomm.channels.impairments import RandomIQImbalance
from metacomm.codecs.detection import lmmse_flat
from metacomm.scenarios.base import FewShotScenario
from metacomm.scenarios.registry import register_scenario

__all__ = ["IQDemodConfig", "IQDemodObjective", "IQDemodScenario", "IQDemodulator", "qam16", "lmmse_flat",
           "ACTIVATIONS"]

NAME = "iq-demod"
M = 16
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def qam16(device=None, dtype=torch.complex64) -> torch.Tensor:
    r"""The 16 points of square 16-QAM, :math:`(a + jb)/\sqrt{10}`, :math:`a, b \in \{-3, -1, 1, 3\}`,
    index :math:`m = 4 i_a + i_b` (ascending levels); :math:`E_s = 1`. (Labels are irrelevant to the SER.)"""
    lv = torch.tensor([-3.0, -1.0, 1.0, 3.0], device=device)
    pts = torch.complex(lv.repeat_interleave(4), lv.repeat(4)) / math.sqrt(10.0)
    return pts.to(dtype)


@dataclass
class IQDemodConfig:
    """Scenario settings (defaults = Park et al., TSP 2021). ``snr_db`` is Es/N0 in dB (per 16-QAM symbol).

    ``epsilon_max`` (linear) and ``delta_max_deg`` (degrees) scale the Beta(``beta_a``, ``beta_b``) draws of
    the amplitude and phase imbalance; ``hidden`` are the widths of the demodulator's hidden layers.
    """

    snr_db: float = 20.0
    epsilon_max: float = 0.15
    delta_max_deg: float = 15.0
    beta_a: float = 5.0
    beta_b: float = 2.0
    num_train_devices: int = 1000
    pilots_per_device: int = 160
    support_pilots: int = 16
    query_pilots: int | None = None  # None: min(144, pilots_per_device - support_pilots)
    num_test_devices: int = 100
    hidden: tuple = (10, 30, 30)
    activation: str = "tanh"
    channel_seed: int = 2021
    test_seed: int = 4243

    def validate(self) -> IQDemodConfig:
        for f in ("num_train_devices", "pilots_per_device", "support_pilots", "num_test_devices"):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        if self.query_pilots is None:  # the rest of each device's stored pilots, at most 144
            if self.support_pilots >= self.pilots_per_device:
                raise ConfigError("support_pilots", f"must be < pilots_per_device = {self.pilots_per_device} "
                                                    f"(the rest form the query set), got {self.support_pilots}")
            self.query_pilots = min(144, self.pilots_per_device - self.support_pilots)
        self.query_pilots = check_positive_int("query_pilots", self.query_pilots)
        if self.support_pilots + self.query_pilots > self.pilots_per_device:
            raise ConfigError("support_pilots", f"support_pilots + query_pilots = "
                                                f"{self.support_pilots + self.query_pilots} exceeds "
                                                f"pilots_per_device = {self.pilots_per_device}")
        self.snr_db = check_db("snr_db", self.snr_db)
        self.epsilon_max = check_nonneg("epsilon_max", self.epsilon_max)
        if self.epsilon_max >= 1.0:
            raise ConfigError("epsilon_max", f"must lie in [0, 1), got {self.epsilon_max!r}")
        self.delta_max_deg = check_nonneg("delta_max_deg", self.delta_max_deg)
        try:
            hidden = tuple(self.hidden)
        except TypeError:
            raise ConfigError("hidden", f"expected a list of layer widths, got {self.hidden!r}") from None
        if not hidden:
            raise ConfigError("hidden", "give at least one hidden layer width")
        self.hidden = tuple(check_positive_int("hidden", h) for h in hidden)
        check_choice("activation", self.activation, ACTIVATIONS)
        for f in ("channel_seed", "test_seed"):
            setattr(self, f, check_int(f, getattr(self, f)))
        # before any allocation: the demodulator, and the training devices' pilots the scenario keeps
        # (symbols, noise, received samples and features: about 48 bytes per pilot)
        check_model_memory("hidden", mlp_params(2, *self.hidden, M), f"a demodulator with hidden = {list(self.hidden)}")
        check_memory(("num_train_devices", "pilots_per_device"),
                     48.0 * self.num_train_devices * self.pilots_per_device + 64.0 * self.num_test_devices,
                     "the stored training pilots")
        return self


class IQDemodulator(nn.Module):
    r"""MLP demodulator: features :math:`[\Re y, \Im y]` ``[B, 2]`` -> hidden layers -> 16 logits ``[B, 16]``.

    ``forward(feats)``; :meth:`logits` takes complex ``y`` ``[B]``. The output layer is ``net[-1]`` (the
    "head" adapted by ANIL)."""

    def __init__(self, hidden=(10, 30, 30), activation: str = "tanh"):
        super().__init__()
        layers, width = [], 2
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, M))
        self.net = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.stack([y.real, y.imag], dim=-1))


class IQDemodObjective(MetaObjective):
    """Cross-entropy of the demodulator's 16 logits. One task's batch (no task axis): ``{"feats": float [B, 2]
    ([Re y, Im y]), "sym": int64 [B]}``; stats ``block_errors`` (symbol errors, arg-max != sym) and ``blocks``
    (symbols), so the engine's "bler" is the SER."""

    adapt = "all"

    def loss(self, model, batch):
        logits = model(batch["feats"])
        sym = batch["sym"]
        loss = nn.functional.cross_entropy(logits, sym)
        errs = (logits.argmax(-1) != sym).sum().to(logits.dtype)
        return loss, {"block_errors": errs, "blocks": torch.ones_like(errs) * sym.shape[0]}


@register_scenario
class IQDemodScenario(FewShotScenario):
    """Models, device populations, task samplers, evaluation and the LMMSE + ML reference of ``iq-demod``.

    Devices are dicts ``{"h": complex [D, 1], "epsilon": real [D, 1], "delta": real [D, 1] (rad)}``. Training
    devices and their 160 received pilots are drawn once from ``channel_seed``; the test devices from
    ``test_seed`` (independent of the training ones).
    """

    name = NAME
    config_class = IQDemodConfig
    metric = "ser"
    support_field = "support_pilots"
    snr_field, snr_kind = "snr_db", "esno"
    test_what = "devices"
    #: Meta-training defaults of the paper (used by ``metacomm meta-train`` when not given).
    meta_defaults = {"meta_batch": 5, "outer_lr": 1e-3, "meta_steps": 3000}
    #: ``metacomm fewshot`` classical references: scheme name -> method name.
    classical_schemes = {"pilot-mmse-ml": "pilot_mmse_ml"}
    #: the schemes of one ``fewshot`` run see the same pilots and test symbols for the same P.
    common_random_numbers = True
    pilots_meaning = "pilots per test device (one set, reused by every adaptation step)"

    def __init__(self, config: IQDemodConfig | None = None, device="cpu"):
        self.config = (config or IQDemodConfig()).validate()
        self.device = torch.device(device)
        c = self.config
        self.no = 10.0 ** (-c.snr_db / 10.0)
        self.iq = RandomIQImbalance(c.epsilon_max, c.delta_max_deg, beta_a=c.beta_a, beta_b=c.beta_b)
        self.fading = RayleighBlockFading()
        self.constellation = qam16(self.device)
        g = torch.Generator(device=self.device).manual_seed(c.channel_seed)
        self.train_devices = self.sample_devices(c.num_train_devices, g)
        D, N = c.num_train_devices, c.pilots_per_device
        self.train_sym = self._balanced_symbols(D, N, g)
        self.train_noise = complex_normal((D, N), generator=g, device=self.device)
        self.train_feats = self._features(self.receive(self.train_sym, self.train_devices, self.train_noise))
        self.set_test_tasks(c.num_test_devices)
        self.objective = IQDemodObjective()

    @classmethod
    def bits_per_symbol(cls, config) -> float:
        """Information bits per 16-QAM symbol: 4."""
        return 4.0

    # --- channel ---------------------------------------------------------------------------------------
    def sample_devices(self, num: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """``num`` devices: IQ imbalance (epsilon, delta) then the channel gain h, all from ``g``."""
        st = self.iq.sample_state(num, 1, generator=g, device=self.device)
        st.update(self.fading.sample_state(num, 1, generator=g, device=self.device))
        return st

    def set_test_tasks(self, num: int) -> None:
        """Draw ``num`` test devices from ``test_seed`` (the first ``n`` devices are the same for any ``num``
        >= ``n`` only up to the Beta sampler's rejection stream; use one count per comparison)."""
        num = check_positive_int("num_test_devices", num)
        g = torch.Generator(device=self.device).manual_seed(self.config.test_seed)
        self.test_devices = self.sample_devices(num, g)

    @property
    def num_test_tasks(self) -> int:
        return int(self.test_devices["h"].shape[0])

    set_test_devices = set_test_tasks  # the name before the scenario contract

    @property
    def num_test_devices(self) -> int:
        return self.num_test_tasks

    def receive(self, sym: torch.Tensor, devices: dict, noise: torch.Tensor) -> torch.Tensor:
        r"""Received samples ``y [D, B]`` of symbol indices ``sym [D, B]`` sent by ``devices`` (``D`` of them):
        IQ imbalance of each device, then its flat gain, then :math:`\sqrt{N_0}` ``noise`` (CN(0,1) ``[D, B]``)."""
        x = self.constellation[sym]
        xi = self.iq(x, 0.0, state={"epsilon": devices["epsilon"], "delta": devices["delta"]})
        return self.fading(xi, self.no, state={"h": devices["h"]}, noise=noise)

    @staticmethod
    def _features(y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y.real, y.imag], dim=-1)

    def _balanced_symbols(self, D: int, num: int, g: torch.Generator) -> torch.Tensor:
        """``[D, num]`` symbol indices; each consecutive group of 16 is a random permutation of the 16."""
        groups = -(-num // M)
        keys = torch.rand(D, groups, M, generator=g, device=self.device)
        return keys.argsort(-1).reshape(D, groups * M)[:, :num]

    def _data(self, devices: dict, num: int, g: torch.Generator, balanced: bool) -> dict:
        D = devices["h"].shape[0]
        sym = self._balanced_symbols(D, num, g) if balanced else \
            torch.randint(0, M, (D, num), generator=g, device=self.device)
        noise = complex_normal((D, num), generator=g, device=self.device)
        return {"feats": self._features(self.receive(sym, devices, noise)), "sym": sym}

    # --- models -----------------------------------------------------------------------------------------
    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised demodulator (PyTorch's default init, drawn from ``seed``)."""
        from metacomm.codecs.learned_base import reset_linear_
        g = torch.Generator().manual_seed(int(seed))
        model = IQDemodulator(self.config.hidden, self.config.activation)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                reset_linear_(m, g)
        return model.to(self.device)

    # --- tasks ------------------------------------------------------------------------------------------
    def sample_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Meta-training tasks: devices drawn uniformly (with replacement) from the training set; support =
        ``support_pilots`` of the device's stored pilots, query = the next ``query_pilots`` (disjoint)."""
        c = self.config
        idx = torch.randint(0, c.num_train_devices, (num_tasks,), generator=g, device=self.device)
        perm = torch.rand(num_tasks, c.pilots_per_device, generator=g, device=self.device).argsort(-1)
        S, Q = c.support_pilots, c.query_pilots
        rows = idx[:, None]

        def pick(cols):
            return {"feats": self.train_feats[rows, cols], "sym": self.train_sym[rows, cols]}

        return TaskBatch(pick(perm[:, :S]), pick(perm[:, S:S + Q]))

    def sample_val_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Held-out tasks: new devices, ``support_pilots`` balanced pilots, ``query_pilots`` uniform symbols."""
        dev = self.sample_devices(num_tasks, g)
        c = self.config
        return TaskBatch(self._data(dev, c.support_pilots, g, True), self._data(dev, c.query_pilots, g, False))

    # --- evaluation -------------------------------------------------------------------------------------
    def _ser(self, model, phi: dict, devices: dict, test_blocks: int, g: torch.Generator) -> tuple[float, float]:
        D = devices["h"].shape[0]
        errs, left = 0.0, test_blocks
        fn = self.objective.loss

        def one(p, b):
            return call(model, p, fn, b)[1]["block_errors"]

        while left > 0:
            num = min(left, 4096)
            b = self._data(devices, num, g, balanced=False)
            errs += float(torch.vmap(one)(phi, b).sum())
            left -= num
        return errs, float(test_blocks * D)

    def evaluate(self, params: dict, model: nn.Module, *, pilots: int, steps, generator: torch.Generator,
                 test_blocks: int = 10000, first=None, rest=None, adapt=None, devices=None,
                 fresh_pilots: bool = False) -> dict[int, tuple]:
        """Few-shot SER on the test devices: ``{steps: (symbol_errors, symbols)}`` pooled over devices.

        Every test device starts from ``params`` and adapts on its ``pilots`` pilots (``fresh_pilots=False``:
        one pilot set reused at every step, the paper's protocol; ``True``: new pilots each step) with
        ``first`` at step 1 (default SGD 0.1; a dict = Meta-SGD rates) and ``rest`` after (default Adam 1e-3);
        after each step listed in ``steps`` (0 = no adaptation) ``test_blocks`` uniform symbols per device are
        demodulated (arg-max). Draw order: pilots, then test symbols, from ``generator``.
        """
        pilots = check_positive_int("pilots", pilots)
        test_blocks = check_positive_int("test_blocks", test_blocks)
        devices = self.test_devices if devices is None else devices
        D = devices["h"].shape[0]
        pilot_batch = self._data(devices, pilots, generator, balanced=True)
        out: dict[int, tuple] = {}

        def draw(step):
            return self._data(devices, pilots, generator, balanced=True) if fresh_pilots else pilot_batch

        def record(step, phi):
            out[step] = self._ser(model, phi, devices, test_blocks, generator)

        finetune_batched(model, params, self.objective.inner_loss, num_tasks=D, draw_batch=draw, record=steps,
                         on_record=record, adapt=adapt, first=first or SGD(0.1), rest=rest or Adam(1e-3))
        return out

    def genie(self, model_seed: int, *, generator: torch.Generator, train_steps: int = 2000, batch: int = 256,
              lr: float = 3e-3, test_blocks: int = 10000) -> tuple[float, float]:
        """Genie-aided learned reference: a demodulator trained from scratch on *each* test device (its own
        copy) with Adam at ``lr``, ``train_steps`` steps of ``batch`` fresh pilots; pooled ``(errors, symbols)``."""
        model = self.build_model(model_seed)
        params = {n: p.detach() for n, p in model.named_parameters()}
        res = self.evaluate(params, model, pilots=batch, steps=[train_steps], generator=generator,
                            test_blocks=test_blocks, first=Adam(lr), rest=Adam(lr), fresh_pilots=True)
        return res[train_steps]

    def pilot_mmse_ml(self, *, pilots: int, generator: torch.Generator, test_blocks: int = 10000,
                      csi: str = "mmse", iq_aware: bool = False, devices=None) -> tuple[float, float]:
        r"""Classical reference: ``csi="mmse"`` -- :func:`lmmse_flat` estimate of :math:`h` from ``pilots``
        balanced pilots per device (IQ imbalance ignored); ``csi="perfect"`` -- the true :math:`h` (no pilots
        drawn). Then ML detection over the ideal 16-QAM points (``iq_aware=True``: over the device's
        IQ-imbalanced points, with perfect CSI the optimal detector). Returns pooled ``(errors, symbols)``."""
        check_choice("csi", csi, ("mmse", "perfect"))
        test_blocks = check_positive_int("test_blocks", test_blocks)
        devices = self.test_devices if devices is None else devices
        D = devices["h"].shape[0]
        h = devices["h"][:, 0]
        if csi == "mmse":
            pilots = check_positive_int("pilots", pilots)
            ps = self._balanced_symbols(D, pilots, generator)
            yp = self.receive(ps, devices, complex_normal((D, pilots), generator=generator, device=self.device))
            h_hat = lmmse_flat(self.constellation[ps], yp, self.no)
        else:
            h_hat = h
        pts = self.constellation.unsqueeze(0).expand(D, M)
        if iq_aware:
            pts = self.iq(pts, 0.0, state={"epsilon": devices["epsilon"], "delta": devices["delta"]})
        ref = h_hat[:, None] * pts  # [D, 16]
        errs, left = 0.0, test_blocks
        while left > 0:
            num = min(left, 4096)
            sym = torch.randint(0, M, (D, num), generator=generator, device=self.device)
            y = self.receive(sym, devices, complex_normal((D, num), generator=generator, device=self.device))
            d = (y.unsqueeze(-1) - ref.unsqueeze(1)).abs()  # [D, num, 16]
            errs += float((d.argmin(-1) != sym).sum())
            left -= num
        return errs, float(D * test_blocks)
