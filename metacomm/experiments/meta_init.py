"""The initialisation a ``meta-train`` checkpoint ships, with the inner update rule it was meta-trained for.

:func:`load_meta_init` is the one reader every consumer of a ``metacomm-meta`` checkpoint uses (``fewshot``, the
compression pack, the drift run's :func:`~metacomm.experiments.drift_session.load_drift_codec`): it returns the
selected initialisation (the checkpoint's ``init`` entry), the scenario, the joint baseline and the *rule* -- an
:class:`~metacomm.adaptation.update_rules.UpdateRule` instance, never a bare rate.

The rule entry. ``meta-train`` writes ``ck["inner_rule"] = {"name", "config", "tensors"}``
(:data:`RULE_KEY`; :func:`~metacomm.adaptation.update_rules.rule_spec`): ``name`` the registered rule
(``"sgd"``, ``"metasgd"``, ``"adam"``, ...), ``config`` its settings as plain values (SGD: ``{"lr": inner_lr}``;
Meta-SGD: ``{}``), ``tensors`` its meta-parameters *of the shipped initialisation* (Meta-SGD: the learned rates
``{parameter name: tensor}`` of the selected restart and step, equal to ``init["lrs"]``; ``{}`` for SGD). The
older keys stay (``meta_config["inner_lr"]``, ``init["lrs"]``, the trainer's ``rule`` / ``lrs`` state used by
``--resume``). A file written before the entry existed is read as the older readers did: ``init["lrs"]``
present -> Meta-SGD with those rates, else ``SGD(meta_config["inner_lr"])``. An entry that disagrees with those
older keys is refused (ConfigError), so no reader can pick a different rule than another.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from metacomm._validation import ConfigError, reraise
from metacomm.adaptation.update_rules import SGD, MetaSGD, UpdateRule, rule_from_spec, rule_spec

__all__ = ["MetaInit", "load_meta_init", "checkpoint_rule", "rule_entry", "RULE_KEY", "KIND"]

#: the kind of a ``meta-train`` checkpoint (its writer, :mod:`metacomm.experiments.meta_train`, imports it from here)
KIND = "metacomm-meta"

#: the checkpoint key of the rule entry (``rule`` itself is the trainer's resume state: the rule's current
#: meta-parameters, kept as it was)
RULE_KEY = "inner_rule"


class MetaInit(NamedTuple):
    """What :func:`load_meta_init` returns: ``model`` (the shipped initialisation on the device), ``rule`` (its
    inner :class:`~metacomm.adaptation.update_rules.UpdateRule`), ``checkpoint`` (the whole dict), ``scenario``
    (the scenario the checkpoint was trained on, built on the device) and ``joint`` (the joint-training baseline's
    model, or ``None`` without one)."""

    model: torch.nn.Module
    rule: UpdateRule
    checkpoint: dict
    scenario: Any
    joint: torch.nn.Module | None


def rule_entry(rule: UpdateRule, selection: dict | None = None) -> dict:
    """The :data:`RULE_KEY` entry ``meta-train`` writes for a run with ``rule`` that ships ``selection`` (a
    trainer snapshot: its ``rule`` meta-parameters, or its ``lrs`` in a snapshot older than them)."""
    tensors = None
    if selection is not None:
        tensors = selection.get("rule")
        if tensors is None:
            tensors = selection.get("lrs") or {}
    return rule_spec(rule, tensors=tensors)


def _init_of(ck: dict) -> dict:
    return ck.get("init") or {"model": ck.get("model"), "lrs": ck.get("lrs")}


def checkpoint_rule(ck: dict, *, device="cpu", field: str = "checkpoint", path: str | None = None) -> UpdateRule:
    """The inner rule of a ``meta-train`` checkpoint dict (module docstring: the :data:`RULE_KEY` entry, or for an
    older file the rule the older readers inferred); tensors on ``device``. ConfigError naming ``field``."""
    where = f"{path}: " if path else ""
    init = _init_of(ck)
    lrs = init.get("lrs")
    inner_lr = (ck.get("meta_config") or {}).get("inner_lr", 0.1)
    entry = ck.get(RULE_KEY)
    if entry is None:  # written before the entry existed
        if lrs:
            return MetaSGD({n: t.to(device) for n, t in lrs.items()})
        return SGD(float(inner_lr))
    rule = rule_from_spec(entry, device=device, field=field)
    if isinstance(rule, MetaSGD) != bool(lrs) or (lrs and (set(lrs) != set(rule.rates) or not all(
            torch.equal(lrs[n].to(device), rule.rates[n]) for n in lrs))):
        raise ConfigError(field, f"{where}the checkpoint's {RULE_KEY} entry ({entry.get('name')}) and its "
                                 "init['lrs'] disagree; rewrite the file with metacomm meta-train")
    if isinstance(rule, SGD) and float(rule.lr) != float(inner_lr):
        raise ConfigError(field, f"{where}the checkpoint's {RULE_KEY} entry has lr {rule.lr}, its meta_config "
                                 f"inner_lr {inner_lr}; rewrite the file with metacomm meta-train")
    return rule


def load_meta_init(path: str, *, device="cpu", field: str = "checkpoint", allow_partial: bool = False) -> MetaInit:
    """The shipped initialisation of a ``meta-train`` checkpoint with its inner rule (:class:`MetaInit`).

    Loaded with :func:`metacomm.artefacts.load_checkpoint` (``weights_only=True``, kind checked, a periodic
    checkpoint of an unfinished run refused unless ``allow_partial``); ConfigError naming ``field`` for a missing
    or foreign file, weights of another codec or a rule entry it cannot read."""
    from metacomm.artefacts import load_checkpoint
    from metacomm.scenarios import make_scenario, scenario_class
    ck = load_checkpoint(path, kinds=KIND, field=field, allow_partial=allow_partial)
    try:  # the checkpoint's own scenario settings: an error names the flag, the inner key in its message
        scenario_class(ck["scenario"], field=field).check_stored_config(ck["scenario_config"], field=field)
        sc = make_scenario(ck["scenario"], device=device, **ck["scenario_config"])
    except ConfigError as e:
        raise reraise(field, e, prefix=f"{path}: the checkpoint's scenario settings: ") from None
    model = sc.build_model(0)
    init = _init_of(ck)  # selected initialisation (meta-train)
    try:
        model.load_state_dict(init["model"])
    except RuntimeError as e:
        raise ConfigError(field, f"{path}: weights are for a different codec: "
                                 f"{str(e).splitlines()[0][:160]}") from None
    model.to(device)
    rule = checkpoint_rule(ck, device=device, field=field, path=path)
    joint = None
    if ck.get("joint_steps"):
        joint = sc.build_model(0)
        joint.load_state_dict((ck.get("joint_init") or ck["joint"])["model"])
        joint.to(device)
    return MetaInit(model, rule, ck, sc, joint)
