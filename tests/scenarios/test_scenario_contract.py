"""The scenario contract, run over the registry: every registered few-shot scenario builds, samples, takes one
meta-step whose task-batched meta-gradient equals the per-task loop's, and evaluates -- so a new pack is tested
by registering. Plus: the contract is enforced at registration, and a scenario defined outside the package runs
through `metacomm meta-train` and `metacomm fewshot` (the CLI knows no scenario by name)."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest
import torch
from torch import nn

from metacomm import ConfigError
from metacomm.adaptation import MetaObjective, TaskBatch, meta_gradients, num_tasks, params_of, select_names
from metacomm.adaptation.functional import SGD, Adam
from metacomm.cli.main import main
from metacomm.scenarios import FewShotScenario, make_scenario, register_scenario, scenario_names
from metacomm.scenarios.registry import _REGISTRY

#: small settings per built-in scenario, so the contract test stays fast (any registered scenario not listed
#: runs with its defaults)
SMALL = {"fading-ae": {"num_train_channels": 10, "num_test_channels": 3},
         "fading-ae-quant": {"num_train_channels": 10, "num_test_channels": 3},
         "label-noise": {"num_train_channels": 10, "num_test_channels": 3},
         "iq-demod": {"num_train_devices": 20, "num_test_devices": 3},
         "drift": {"drift": os.path.join(os.path.dirname(__file__), "data", "drift_k4n4.toml"), "hidden": 8, "pilots": 1, "query": 4, "frames_per_task": 3, "test_frames": 4,
                   "num_test_sequences": 2},
         "adversarial": {"messages_per_task": 16, "num_test_tasks": 2, "pgd_steps": 2, "uap_steps": 2}}


def _build(name):
    return make_scenario(name, **SMALL.get(name, {}))


def _equal_trees(a, b):
    from torch.utils._pytree import tree_leaves
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(torch.equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("name", scenario_names())
def test_registered_scenario_builds_and_samples_reproducibly(name):
    sc = _build(name)
    assert isinstance(sc, FewShotScenario) and sc.name == name
    # config round trip: the dict stored in checkpoints rebuilds the same scenario
    again = make_scenario(name, **sc.config_dict())
    assert again.config_dict() == sc.config_dict()
    json.dumps(sc.config_dict())  # stored in results files: must be JSON-able
    m0, m0b, m1 = sc.build_model(0), sc.build_model(0), sc.build_model(1)
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m0b.state_dict().values(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values(),
                                                      strict=True))
    for sampler in (sc.sample_tasks, sc.sample_val_tasks):
        t1 = sampler(3, torch.Generator().manual_seed(7))
        t2 = sampler(3, torch.Generator().manual_seed(7))
        t3 = sampler(3, torch.Generator().manual_seed(8))
        assert isinstance(t1, TaskBatch) and num_tasks(t1) == 3
        assert _equal_trees(t1, t2) and not _equal_trees(t1, t3)
    assert sc.bits_per_symbol(sc.config) > 0
    assert sc.meta_defaults["meta_batch"] >= 1 and sc.meta_defaults["outer_lr"] > 0


@pytest.mark.parametrize("algo", ["maml", "fomaml"])
@pytest.mark.parametrize("name", scenario_names())
def test_one_meta_step_batched_equals_the_per_task_loop(name, algo):
    torch.manual_seed(0)
    sc = _build(name)
    model = sc.build_model(0)
    tasks = sc.sample_tasks(4, torch.Generator().manual_seed(3))
    adapt = select_names(model, sc.objective.adapt)
    kw = dict(algo=algo, adapt=adapt, inner_steps=1, inner_lr=0.1)
    gb = meta_gradients(model, sc.objective, params_of(model), tasks, batched=True, **kw)
    gl = meta_gradients(model, sc.objective, params_of(model), tasks, batched=False, **kw)
    assert torch.allclose(gb.task_losses, gl.task_losses, rtol=1e-5, atol=1e-6)
    for n in gb.grads:
        assert torch.allclose(gb.grads[n], gl.grads[n], rtol=1e-4, atol=1e-6), n
    assert any(g.abs().sum() > 0 for g in gb.grads.values())


@pytest.mark.parametrize("name", scenario_names())
def test_tiny_evaluation_and_references_count_what_they_should(name):
    sc = _build(name)
    sc.set_test_tasks(2)
    assert sc.num_test_tasks == 2
    model = sc.build_model(0)
    res = sc.evaluate(params_of(model), model, pilots=2, steps=[0, 1], generator=torch.Generator().manual_seed(1),
                      test_blocks=16, first=SGD(0.1), rest=Adam(1e-3))
    assert sorted(res) == [0, 1]
    for e, n in res.values():
        assert n == 2 * 16 and 0 <= e <= n
    e, n = sc.genie(3, generator=torch.Generator().manual_seed(2), train_steps=2, test_blocks=16)
    assert n == 2 * 16 and 0 <= e <= n
    for scheme in sc.classical_schemes:
        e, n = sc.classical(scheme, pilots=4, generator=torch.Generator().manual_seed(3), test_blocks=16)
        assert n == 2 * 16 and 0 <= e <= n
    with pytest.raises(ConfigError, match="pilots"):
        sc.evaluate(params_of(model), model, pilots=0, steps=[0], generator=torch.Generator(), test_blocks=4)


# --- the contract is checked at registration ------------------------------------------------------------------

@dataclasses.dataclass
class _EqConfig:
    """Toy few-shot scenario: equalise a flat complex gain from pilots. ``snr_db`` is Es/N0 per BPSK symbol."""

    snr_db: float = 10.0
    support: int = 8
    query: int = 16
    num_test: int = 4
    test_seed: int = 5

    def validate(self):
        if not math.isfinite(self.snr_db):
            raise ConfigError("snr_db", f"must be finite, got {self.snr_db!r}")
        if self.support < 1:
            raise ConfigError("support", f"must be >= 1, got {self.support!r}")
        return self


class _EqObjective(MetaObjective):
    adapt = "all"

    def loss(self, model, batch):
        logits = model(batch["y"])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch["b"])
        errs = ((logits > 0).to(logits.dtype) != batch["b"]).sum().to(logits.dtype)
        return loss, {"block_errors": errs, "blocks": torch.ones_like(errs) * batch["b"].shape[0]}


class _Eq(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, y):
        return self.lin(y).squeeze(-1)


class _EqScenario(FewShotScenario):
    name = "toy-flat-eq"
    config_class = _EqConfig
    metric = "ser"
    meta_defaults = {"meta_batch": 4, "outer_lr": 0.01, "meta_steps": 20}
    support_field = "support"
    snr_field, snr_kind = "snr_db", "esno"
    classical_schemes = {"pilot-ls": "pilot_ls"}
    test_what = "devices"

    def __init__(self, config=None, device="cpu"):
        self.config = (config or _EqConfig()).validate()
        self.device = torch.device(device)
        self.objective = _EqObjective()
        self.no = 10 ** (-self.config.snr_db / 10)
        self.set_test_tasks(self.config.num_test)

    @classmethod
    def bits_per_symbol(cls, config):
        return 1.0

    def build_model(self, seed):
        g = torch.Generator().manual_seed(seed)
        m = _Eq()
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        return m

    def _data(self, h, num, g):
        b = torch.randint(0, 2, (h.shape[0], num), generator=g).float()
        w = torch.randn(h.shape[0], num, 2, generator=g) * math.sqrt(self.no / 2)
        x = 1 - 2 * b
        y = torch.stack([h.real[:, None] * x, h.imag[:, None] * x], -1) + w
        return {"y": y, "b": b}

    def _gains(self, num, g):
        return torch.complex(torch.randn(num, generator=g), torch.randn(num, generator=g)) / math.sqrt(2)

    def sample_tasks(self, num_tasks, generator):
        h = self._gains(num_tasks, generator)
        return TaskBatch(self._data(h, self.config.support, generator), self._data(h, self.config.query, generator))

    sample_val_tasks = sample_tasks

    def set_test_tasks(self, num):
        self.test_h = self._gains(num, torch.Generator().manual_seed(self.config.test_seed))

    @property
    def num_test_tasks(self):
        return int(self.test_h.shape[0])

    def evaluate(self, params, model, *, pilots, steps, generator, test_blocks=10000, first=None, rest=None,
                 adapt=None):
        from metacomm.adaptation import finetune_batched
        from metacomm.adaptation.functional import batched_loss
        out = {}
        if pilots < 1:
            raise ConfigError("pilots", f"must be >= 1, got {pilots}")

        def record(step, phi):
            _, st = batched_loss(model, {}, self.objective.loss, self._data(self.test_h, test_blocks, generator), phi)
            out[step] = (float(st["block_errors"].sum()), float(test_blocks * self.num_test_tasks))

        finetune_batched(model, params, self.objective.inner_loss, num_tasks=self.num_test_tasks,
                         draw_batch=lambda s: self._data(self.test_h, pilots, generator), record=steps,
                         on_record=record, adapt=adapt, first=first, rest=rest)
        return out

    def genie(self, model_seed, *, generator, train_steps=2000, test_blocks=10000):
        m = self.build_model(model_seed)
        return self.evaluate(params_of(m), m, pilots=64, steps=[train_steps], generator=generator,
                             test_blocks=test_blocks, first=Adam(0.05), rest=Adam(0.05))[train_steps]

    def pilot_ls(self, *, pilots, generator, test_blocks=10000):
        p = self._data(self.test_h, pilots, generator)
        x_p = 1 - 2 * p["b"]
        yc = torch.complex(p["y"][..., 0], p["y"][..., 1])
        h_hat = (yc * x_p).sum(-1) / (x_p * x_p).sum(-1)
        t = self._data(self.test_h, test_blocks, generator)
        yt = torch.complex(t["y"][..., 0], t["y"][..., 1])
        b_hat = ((yt * h_hat.conj()[:, None]).real < 0).float()
        return float((b_hat != t["b"]).sum()), float(test_blocks * self.num_test_tasks)


@pytest.fixture
def toy_registered():
    register_scenario(_EqScenario)
    yield _EqScenario
    _REGISTRY.pop(_EqScenario.name, None)


def test_a_pack_defined_outside_the_package_runs_through_meta_train_and_fewshot(toy_registered, tmp_path, capsys):
    ck = tmp_path / "m.pt"
    assert main(["meta-train", "--scenario", "toy-flat-eq", "--meta-steps", "30", "--val-every", "10",
                 "--val-tasks", "8", "--quiet", "--ebno-db", "8", "--support-pilots", "4", "--out", str(ck)]) == 0
    stored = torch.load(ck, weights_only=True)
    assert stored["scenario"] == "toy-flat-eq" and stored["scenario_config"]["support"] == 4
    assert stored["scenario_config"]["snr_db"] == 8.0  # BPSK: Es/N0 = Eb/N0
    fs = tmp_path / "fs"
    assert main(["fewshot", "--checkpoint", str(ck), "--pilots", "2,8", "--steps", "0,1", "--test-blocks", "200",
                 "--genie-steps", "20", "--out", str(fs)]) == 0
    res = json.loads((fs / "results.json").read_text())
    assert {r["scheme"] for r in res["results"]} == {"meta", "joint", "random", "genie", "pilot-ls"}
    assert res["config"]["metric"] == "ser" and (fs / "ser_vs_steps.png").exists()
    # pilot-LS with 8 BPSK pilots at 8 dB on a flat channel: SER near the closed form Q(sqrt(2 Es/N0)) ~ 1.9e-4
    # averaged over Rayleigh gains (~ 0.019 for 4 devices it is noisy): only check it beats chance clearly
    ls = [r for r in res["results"] if r["scheme"] == "pilot-ls" and r["pilots"] == 8][0]
    assert ls["ser"] < 0.25
    capsys.readouterr()
    rc = main(["meta-train", "--scenario", "toy-flat-eq", "--set", "nonsense=1", "--out", str(tmp_path / "x.pt")])
    assert rc == 2 and "nonsense" in capsys.readouterr().err


def test_registration_rejects_broken_declarations():
    class NoMethods(FewShotScenario):
        name = "broken"
        config_class = _EqConfig
        support_field = "support"
        snr_field = "snr_db"

    with pytest.raises(TypeError, match="does not implement"):
        register_scenario(NoMethods)

    bad_field = type("BadField", (_EqScenario,), {"name": "bad-field", "support_field": "pilots"})
    with pytest.raises(TypeError, match="support_field"):
        register_scenario(bad_field)
    bad_metric = type("BadMetric", (_EqScenario,), {"name": "bad-metric", "metric": "accuracy"})
    with pytest.raises(TypeError, match="metric"):
        register_scenario(bad_metric)
    bad_ref = type("BadRef", (_EqScenario,), {"name": "bad-ref", "classical_schemes": {"ls": "nope"}})
    with pytest.raises(TypeError, match="names no method"):
        register_scenario(bad_ref)
    clash = type("Clash", (_EqScenario,), {"name": "fading-ae"})
    with pytest.raises(TypeError, match="already registered"):
        register_scenario(clash)
    not_dc = type("NotDC", (_EqScenario,), {"name": "not-dc", "config_class": dict})
    with pytest.raises(TypeError, match="dataclass"):
        register_scenario(not_dc)
    assert "broken" not in scenario_names() and "bad-field" not in scenario_names()


def test_make_scenario_names_the_bad_key_and_the_allowed_values():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'; allowed: fading-ae, iq-demod"):
        make_scenario("nope")
    with pytest.raises(ConfigError, match="^num_tapz: scenario 'fading-ae' has no setting 'num_tapz'; its settings: k, n, num_taps"):
        make_scenario("fading-ae", num_tapz=3)
