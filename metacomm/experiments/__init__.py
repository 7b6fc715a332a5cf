"""Experiments as library functions: each takes a validated config dataclass and writes its artefacts.

* :func:`run_meta_train` (:class:`MetaTrainConfig`) -- meta-train a scenario's initialisation (+ joint baseline);
* :func:`run_fewshot` (:class:`FewShotConfig`) -- few-shot adaptation on new test tasks with baselines;
* :func:`run_train` (:class:`TrainConfig`) -- train a learned codec end to end;
* :func:`run_ber` (:class:`BerConfig`) -- a Monte-Carlo BER/BLER sweep of a link;
* :func:`run_drift_experiment` (:class:`DriftConfig`) -- a drift run, every scheme on the same channel draws;
* :func:`run_demo` (:class:`DemoConfig`) -- the main job (``metacomm demo``).

The ``metacomm`` commands are thin wrappers (flags -> config -> one call -> print). Library errors are
:class:`~metacomm.ConfigError` s naming config keys (``meta_steps``); the CLI maps keys to flags in one place
(:func:`metacomm.cli.main.flag_of`).
"""

from metacomm.experiments.ber import BerConfig, run_ber
from metacomm.experiments.demo import DemoConfig, run_demo
from metacomm.experiments.drift import DriftConfig, run_drift_experiment
from metacomm.experiments.fewshot import FewShotConfig, run_fewshot
from metacomm.experiments.meta_train import MetaTrainConfig, run_meta_train
from metacomm.experiments.train import TrainConfig, run_train

__all__ = ["BerConfig", "run_ber", "DemoConfig", "run_demo", "DriftConfig", "run_drift_experiment", "FewShotConfig", "MetaTrainConfig", "run_fewshot", "run_meta_train", "TrainConfig", "run_train"]
