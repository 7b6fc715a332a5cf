r"""The few-shot scenario contract: what a scenario pack declares so that ``meta-train``, ``fewshot`` and every
experiment can run it without knowing it by name.

A *scenario* bundles a task distribution (channels, devices, impairments), a codec architecture, a
:class:`~metacomm.adaptation.objective.MetaObjective`, task samplers, a test protocol and the references a
learned result is compared with. A pack subclasses :class:`FewShotScenario`, fills in the declared class
attributes and abstract methods, and registers with :func:`metacomm.scenarios.registry.register_scenario`,
which checks the declaration at import time (a missing method, a config that is not a dataclass with
``validate``, an unknown metric, a classical reference naming no method: :class:`TypeError` when the module is
imported, not at a user's run). :func:`metacomm.scenarios.make_scenario` then builds it by name with config
overrides; the contract test ``tests/scenarios/test_scenario_contract.py`` runs every registered scenario
through build, sampling, one meta-step (batched == per-task loop) and a tiny evaluation.

Declared class attributes
-------------------------
``name`` (str)
    Registry key, e.g. ``"fading-ae"``.
``config_class`` (dataclass type)
    Settings; ``config_class(**overrides).validate()`` returns the validated config or raises
    :class:`~metacomm.ConfigError` naming the field.
``metric`` (``"bler"`` or ``"ser"``)
    What an error count is: block (message) errors or symbol errors. Results carry ``bler``/``ser`` keys.
``meta_defaults`` (dict)
    Meta-training defaults: ``meta_batch`` (tasks per update), ``outer_lr`` (outer Adam rate),
    ``meta_steps`` (outer updates per restart).
``support_field`` (str)
    The config field that sets the support (pilot) set size per task during meta-training (what
    ``meta-train --support-pilots`` sets).
``snr_field``, ``snr_kind`` (and the classmethod ``bits_per_symbol(config)``)
    The config field holding the training SNR in dB and what it measures: ``"ebno"`` (Eb/N0, per information
    bit) or ``"esno"`` (Es/N0, per channel symbol); ``bits_per_symbol(config)`` = information bits per channel symbol
    :math:`\rho`, so that :math:`E_s/N_0 = E_b/N_0 + 10\log_{10}\rho` dB converts between them.
``classical_schemes`` (dict)
    Scheme name -> method name of the classical references that know what the learned codec knows (the
    pilots): each method is ``(*, pilots, generator, test_blocks) -> (errors, count)``.
``common_random_numbers`` (bool)
    Whether every scheme of one evaluation sees the same pilots and test data (for the same pilot count).
``pilots_meaning`` (str)
    What the ``pilots`` count means at run time (for results files and plots).
``test_what`` (str)
    What one test task is (``"channels"``, ``"devices"``), for messages and results.

Abstract methods
----------------
``build_model(seed) -> nn.Module``; ``sample_tasks(num_tasks, generator) -> TaskBatch`` (training tasks);
``sample_val_tasks(num_tasks, generator) -> TaskBatch`` (held-out tasks, disjoint from training and test);
``set_test_tasks(num)`` and the property ``num_test_tasks`` (test-task selection: ``num`` new test tasks
drawn from the scenario's test seed); ``evaluate(params, model, *, pilots, steps, generator, test_blocks,
first, rest, adapt) -> {step: (errors, count)}`` (few-shot adaptation on the test tasks, errors pooled over
them); ``genie(model_seed, *, generator, train_steps, test_blocks) -> (errors, count)`` (a codec trained on
each test task itself).

Every random draw goes through the ``generator`` passed in (or one seeded from the config); losses follow the
``torch.func`` rules in ``docs/ARCHITECTURE.md`` ("Adding a scenario pack").
"""

from __future__ import annotations

import abc
from dataclasses import asdict
from typing import Any, ClassVar

import torch
from torch import nn

from metacomm.adaptation import MetaObjective, TaskBatch

__all__ = ["FewShotScenario", "METRICS", "SNR_KINDS"]

METRICS = ("bler", "ser")
SNR_KINDS = ("ebno", "esno")


class FewShotScenario(abc.ABC):
    """Base class of few-shot scenario packs (module docstring). Subclasses set the class attributes and
    implement the abstract methods; ``__init__(config=None, device="cpu")`` validates the config and stores
    ``self.config``, ``self.device`` and ``self.objective``."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    metric: ClassVar[str] = "bler"
    meta_defaults: ClassVar[dict[str, Any]] = {"meta_batch": 20, "outer_lr": 0.01, "meta_steps": 3000}
    support_field: ClassVar[str]
    snr_field: ClassVar[str]
    snr_kind: ClassVar[str] = "ebno"
    classical_schemes: ClassVar[dict[str, str]] = {}
    common_random_numbers: ClassVar[bool] = False
    pilots_meaning: ClassVar[str] = "fresh pilot messages per adaptation step"
    test_what: ClassVar[str] = "channels"

    config: Any
    device: torch.device
    objective: MetaObjective

    # --- settings ---------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def bits_per_symbol(cls, config) -> float:
        """Information bits per channel symbol :math:`\\rho` under ``config`` (Eb/N0 <-> Es/N0 conversion)."""

    def config_dict(self) -> dict:
        """The validated settings as a plain dict (stored in checkpoints and results)."""
        return asdict(self.config)

    @classmethod
    def check_stored_config(cls, config: dict, *, field: str = "checkpoint") -> None:
        """Refuse settings read back from a checkpoint that the scenario cannot rebuild from the checkpoint alone
        (ConfigError naming ``field``); called by the checkpoint loaders before the scenario is built. Default:
        nothing to refuse (every setting is a value)."""
        return None

    # --- models and tasks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised codec, weights drawn from ``seed``, on the scenario's device."""

    @abc.abstractmethod
    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``num_tasks`` meta-training tasks (support and query batches stacked on dim 0)."""

    @abc.abstractmethod
    def sample_val_tasks(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``num_tasks`` held-out tasks for validation and model selection."""

    # --- test protocol ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def set_test_tasks(self, num: int) -> None:
        """Select ``num`` test tasks (new channels/devices) drawn from the scenario's test seed."""

    @property
    @abc.abstractmethod
    def num_test_tasks(self) -> int:
        """Number of test tasks :meth:`evaluate` runs on."""

    @abc.abstractmethod
    def evaluate(self, params: dict, model: nn.Module, *, pilots: int, steps, generator: torch.Generator,
                 test_blocks: int = 10000, first=None, rest=None, adapt=None) -> dict[int, tuple[float, float]]:
        """Few-shot errors on the test tasks: ``{steps: (errors, count)}`` pooled over the test tasks."""

    @abc.abstractmethod
    def genie(self, model_seed: int, *, generator: torch.Generator, train_steps: int = 2000,
              test_blocks: int = 10000) -> tuple[float, float]:
        """Learned genie: a codec trained from scratch on each test task; pooled ``(errors, count)``."""

    def classical(self, scheme: str, *, pilots: int, generator: torch.Generator, test_blocks: int = 10000
                  ) -> tuple[float, float]:
        """Run the classical reference ``scheme`` (a key of :attr:`classical_schemes`)."""
        from metacomm._validation import check_choice
        check_choice("schemes", scheme, tuple(self.classical_schemes))
        return getattr(self, self.classical_schemes[scheme])(pilots=pilots, generator=generator,
                                                              test_blocks=test_blocks)
