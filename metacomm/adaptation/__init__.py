"""The meta-engine: task-batched MAML, FOMAML, Reptile, Meta-SGD and ANIL on any module.

Small pure functions that compose (see the module docstrings for the maths):

* :mod:`~metacomm.adaptation.params` -- parameter dicts, adapt specs (``"decoder"``, ``"head"``, globs);
* :mod:`~metacomm.adaptation.functional` -- :func:`call` (evaluate a module with given weights),
  :func:`inner_adapt` (vmappable inner SGD loop), :func:`inner_adapt_autograd` (single-task, reference/fast),
  functional :class:`SGD` / :class:`Adam`;
* :mod:`~metacomm.adaptation.objective` -- :class:`TaskBatch`, :class:`MetaObjective` hook;
* :mod:`~metacomm.adaptation.algorithms` -- :func:`meta_gradients` (task-batched or per-task loop);
* :mod:`~metacomm.adaptation.trainer` -- :class:`MetaTrainer` (outer Adam, validation, exact-resume
  checkpoints, NaN/inf guard);
* :mod:`~metacomm.adaptation.finetune` -- :func:`finetune_batched` (run-time adaptation of many copies at once);
* :mod:`~metacomm.adaptation.online` -- :class:`AdaptiveCodec` (meta-init + per-link fast weights,
  ``observe``/``decode``, adaptation :data:`POLICIES`) and :mod:`~metacomm.adaptation.detectors` (drift
  detectors: threshold, CUSUM, noise floor).

Layering: this package may import :mod:`metacomm.codecs` and :mod:`metacomm.channels`, never ``sims`` or
``scenarios``.
"""

from metacomm.adaptation.algorithms import (
    ALGORITHMS,
    MetaGradient,
    adapt_and_score,
    default_adapt,
    meta_gradients,
)
from metacomm.adaptation.detectors import (
    DETECTORS,
    CUSUMDetector,
    Detector,
    NoiseFloorDetector,
    ThresholdDetector,
    make_detector,
)
from metacomm.adaptation.finetune import finetune_batched
from metacomm.adaptation.functional import SGD, Adam, Optimizer, call, inner_adapt, inner_adapt_autograd
from metacomm.adaptation.objective import MetaObjective, SupervisedObjective, TaskBatch, num_tasks, task_slice
from metacomm.adaptation.online import POLICIES, AdaptiveCodec
from metacomm.adaptation.params import PRESETS, clone_params, head_names, params_of, select_names
from metacomm.adaptation.trainer import MetaConfig, MetaTrainer, StepReport

__all__ = [
    "AdaptiveCodec",
    "POLICIES",
    "DETECTORS",
    "Detector",
    "ThresholdDetector",
    "CUSUMDetector",
    "NoiseFloorDetector",
    "make_detector",
    "finetune_batched",
    "ALGORITHMS",
    "PRESETS",
    "SGD",
    "Adam",
    "MetaConfig",
    "MetaGradient",
    "MetaObjective",
    "MetaTrainer",
    "Optimizer",
    "StepReport",
    "SupervisedObjective",
    "TaskBatch",
    "adapt_and_score",
    "call",
    "clone_params",
    "default_adapt",
    "head_names",
    "inner_adapt",
    "inner_adapt_autograd",
    "meta_gradients",
    "num_tasks",
    "params_of",
    "select_names",
    "task_slice",
]
