"""The meta-engine: task-batched MAML, FOMAML, Reptile, Meta-SGD and ANIL on any module.

Small pure functions that compose (see the module docstrings for the maths):

* :mod:`~metacomm.adaptation.params` -- parameter dicts, adapt specs (``"decoder"``, ``"head"``, globs);
* :mod:`~metacomm.adaptation.update_rules` -- the pluggable inner update rule (:class:`UpdateRule`:
  ``meta_params``, ``init``, pure ``step``, ``wrap_loss``): :class:`SGD`, :class:`MetaSGD` (learned
  per-parameter rates), functional :class:`Adam`;
* :mod:`~metacomm.adaptation.functional` -- :func:`call` (evaluate a module with given weights),
  :func:`inner_adapt` (vmappable inner loop), :func:`inner_adapt_autograd` (single-task, reference/fast),
  :func:`inner_adapt_batched` (the task-batched engine);
* :mod:`~metacomm.adaptation.objective` -- :class:`TaskBatch`, :class:`MetaObjective` hook,
  :class:`SupervisedObjective`;
* :mod:`~metacomm.adaptation.algorithms` -- :func:`meta_gradients` (task-batched or per-task loop),
  :func:`adapt_and_score` / :func:`evaluate_init` (score an initialisation on one's own tasks);
* :mod:`~metacomm.adaptation.trainer` -- :class:`MetaTrainer` (outer Adam on the model's parameters and the
  rule's meta-parameters, validation, exact-resume checkpoints, NaN/inf guard), :func:`pretrain` (the
  pretrain-then-fine-tune baseline);
* :mod:`~metacomm.adaptation.finetune` -- :func:`finetune_batched` (run-time adaptation of many copies at once);
* :mod:`~metacomm.adaptation.online` -- :class:`AdaptiveCodec` (meta-init + per-link fast weights,
  ``observe``/``decode``, adaptation :data:`POLICIES`, ``save_state``/``load_state``) and
  :mod:`~metacomm.adaptation.detectors` (drift detectors: threshold, CUSUM, noise floor).

Every engine function that adapts takes one ``adapt`` spelling (an adapt spec: ``"all"``, ``"decoder"``,
``"head"``, globs, or a list of names) and one ``rule`` (an :class:`UpdateRule`); the older ``lr=``,
``inner_lr=`` and ``lrs=`` arguments remain as deprecated spellings of ``rule=SGD(...)`` / ``rule=MetaSGD(...)``.

Layering: this package may import :mod:`metacomm.codecs` and :mod:`metacomm.channels`, never ``sims`` or
``scenarios``.
"""

from metacomm.adaptation.algorithms import (
    ALGORITHMS,
    MetaGradient,
    TaskScores,
    adapt_and_score,
    default_adapt,
    evaluate_init,
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
from metacomm.adaptation.functional import (
    batched_loss,
    call,
    inner_adapt,
    inner_adapt_autograd,
    inner_adapt_batched,
)
from metacomm.adaptation.objective import MetaObjective, SupervisedObjective, TaskBatch, num_tasks, task_slice
from metacomm.adaptation.online import POLICIES, AdaptiveCodec
from metacomm.adaptation.params import (
    PRESETS,
    clone_params,
    head_names,
    params_of,
    resolve_adapt,
    select_names,
)
from metacomm.adaptation.trainer import MetaConfig, MetaTrainer, StepReport, default_rule, pretrain
from metacomm.adaptation.update_rules import SGD, Adam, MetaSGD, Optimizer, UpdateRule, as_rule

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
    "MetaSGD",
    "UpdateRule",
    "as_rule",
    "TaskScores",
    "evaluate_init",
    "pretrain",
    "default_rule",
    "resolve_adapt",
    "batched_loss",
    "inner_adapt_batched",
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

from metacomm.adaptation.tracking import KalmanTracker, gaussian_block_logits, gaussian_nll  # noqa: E402

__all__ += ["KalmanTracker", "gaussian_block_logits", "gaussian_nll"]
