"""mslib.memory_probe: the memory term's GPW weight mass against hand-computed contrastive weights, the bound of
MS's per-anchor normalisation, and the probe on a run's own training embeddings."""

import pytest
import torch

from mslib.memory_probe import memory_pull, memory_pull_of_run
from mslib.models import build_model
from mslib.run.config import TrainConfig


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def test_contrastive_mass_is_the_count_of_active_pairs_over_the_batch_size():
    batch, labels = _unit(12, 6, 0), torch.arange(4).repeat_interleave(3)
    memory, mem_labels = _unit(40, 6, 1), torch.arange(40) % 5
    got = memory_pull("contrastive", batch, labels, memory, mem_labels, pos_margin=1.0, neg_margin=0.2)
    s = batch @ memory.T
    neg = mem_labels[None, :] != labels[:, None]
    active = neg & (s > 0.2)  # d/dS [S − λ]_+ = 1 on each active negative, over m = 12 anchors
    assert got["memory: negative weight"] == pytest.approx(float(active.sum()) / 12, rel=1e-12)
    assert got["memory: weighted negatives per anchor"] == pytest.approx(float(active.sum(1).double().mean()))
    pos = ~neg  # d/dS [1 − S]_+ = 1 on every positive with S < 1
    assert got["memory: positive weight"] == pytest.approx(float((pos & (s < 1)).sum()) / 12, rel=1e-12)
    ratio = got["memory: negative weight"] / got["batch: negative weight"]
    assert got["memory / batch, negative weight"] == pytest.approx(ratio)


def test_a_doubled_memory_doubles_contrastives_pull_and_ms_stays_below_one_per_anchor():
    batch, labels = _unit(12, 6, 2), torch.arange(4).repeat_interleave(3)
    memory, mem_labels = _unit(60, 6, 3), torch.arange(60) % 6
    doubled, doubled_labels = torch.cat([memory, memory]), torch.cat([mem_labels, mem_labels])
    con = {m.shape[0]: memory_pull("contrastive", batch, labels, m, ml, pos_margin=1.0, neg_margin=0.0)
           for m, ml in [(memory, mem_labels), (doubled, doubled_labels)]}
    assert con[120]["memory: negative weight"] == pytest.approx(2 * con[60]["memory: negative weight"], rel=1e-12)
    ms = {"alpha": 2.0, "beta": 2.0, "lam": 0.5, "epsilon": None}  # a small β keeps the sums away from 1
    mass = [memory_pull("multi_similarity", batch, labels, m, ml, **ms)["memory: negative weight"]
            for m, ml in [(memory, mem_labels), (doubled, doubled_labels)]]
    assert all(0 < x < 1 for x in mass), "MS: an anchor's negative weights e^a / (1 + Σ e^a) sum to < 1"
    assert mass[1] < 1.1 * mass[0], "twice the memory pairs, about the same MS negative mass"


def test_the_probe_on_a_runs_training_embeddings_and_its_errors():
    cfg = TrainConfig(dataset_options={"classes": 40, "images_per_class": 12}, embedding_dim=16, p=4, k=3,
                      loss="contrastive", loss_params={"pos_margin": 1.0, "neg_margin": 0.5})
    model = build_model(cfg.backbone, cfg.embedding_dim, in_channels=1, pooling=cfg.pooling)
    got = memory_pull_of_run(cfg, model, 60, seed=1)
    assert got["batch: weighted negatives per anchor"] <= cfg.p * cfg.k - cfg.k
    assert got["memory: weighted negatives per anchor"] <= 60
    assert got == memory_pull_of_run(cfg, model, 60, seed=1), "seeded"
    with pytest.raises(ValueError, match="exceeds the 228 training images outside the batch"):
        memory_pull_of_run(cfg, model, 10_000)
    with pytest.raises(ValueError, match="non-empty memory"):
        memory_pull("contrastive", torch.eye(2, dtype=torch.float64), torch.tensor([0, 1]),
                    torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.long))


# -- memory_drift: the memory's rows against the current network's embeddings of the same images ------------------
DRIFT = dict(dataset_options={"classes": 12, "images_per_class": 6}, embedding_dim=8, p=4, k=3, iterations=12,
             milestones=[10], eval_every=6, loss="contrastive", memory_size=36, memory_start=5,
             memory_batch_loss=True)


def _hand_drift(cfg: TrainConfig, probe: int) -> dict[str, float]:
    """A plain loop: every update's images and the model before it, then the rows the memory holds at ``probe``
    (the last memory_size / P·K written batches) embedded by the model that wrote them and by the model after
    ``probe``."""
    import copy

    from mslib.run.trainer import build_run, torch_threads, train_iteration, train_loader

    with torch_threads(cfg.threads):  # the run's thread count, as fit's
        run = build_run(cfg)
        batches, seen = iter(train_loader(run)), []
        for update in range(1, probe + 1):
            images, labels = next(batches)
            seen.append((update, images, copy.deepcopy(run.model)))
            train_iteration(run, images, labels)
    written = [(u, x, m) for u, x, m in seen if u > cfg.memory_start][-(cfg.memory_size // (cfg.p * cfg.k)):]
    now = copy.deepcopy(run.model).train()
    layout = torch.channels_last
    with torch_threads(cfg.threads), torch.no_grad():
        drift = [1 - (m.train()(x.contiguous(memory_format=layout)) * now(x.contiguous(memory_format=layout)))
                 .sum(1) for _, x, m in written]
    return {"oldest": float(drift[0].mean()), "newest": float(drift[-1].mean()), "rows": 12.0 * len(written)}


def test_memory_drift_matches_a_plain_loop_and_leaves_the_run_as_fit_trains_it():
    from mslib.memory_probe import memory_drift
    from mslib.run.trainer import fit

    cfg = TrainConfig(**DRIFT)
    got = memory_drift(cfg, [6, 9, 12])
    assert [row["iteration"] for row in got.probes] == [6.0, 9.0, 12.0]
    for row in got.probes:
        hand = _hand_drift(cfg, int(row["iteration"]))
        assert row["memory rows"] == hand["rows"]
        assert row["drift, oldest batch"] == pytest.approx(hand["oldest"], abs=1e-6)
        assert row["drift, newest batch"] == pytest.approx(hand["newest"], abs=1e-6)
    assert got.probes[-1]["drift, oldest batch"] > 1e-4  # the network moved over the memory's span
    assert got.final_test == fit(cfg, progress=False).metrics["final"]["test"]  # the probe measured fit's run


def test_memory_drift_is_zero_when_the_network_does_not_move():
    from mslib.memory_probe import memory_drift

    rows = memory_drift(TrainConfig(**{**DRIFT, "lr": 0.0}), [8, 12]).probes
    for row in rows:
        assert abs(row["drift 1 − cos, mean"]) < 1e-6 and row["|ΔS| batch × memory, mean"] == 0.0


@pytest.mark.parametrize("change, probe_at, message", [
    ({"memory_size": 0}, [6], "memory of whole batches"),
    ({"memory_size": 30}, [6], "multiple of P·K = 12"),
    ({}, [0, 6], "probe_at must lie in 1..12"),
    ({}, [13], "probe_at must lie in 1..12"),
])
def test_memory_drift_refuses_what_it_cannot_measure(change, probe_at, message):
    from mslib.memory_probe import memory_drift

    with pytest.raises(ValueError, match=message):
        memory_drift(TrainConfig(**{**DRIFT, **change}), probe_at)


def test_memory_drifts_in_workers_equal_the_serial_probe(tmp_path):
    from mslib.memory_probe import memory_drift, memory_drifts
    from mslib.run.records import RunStore

    configs = {"a": TrainConfig(**DRIFT), "b": TrainConfig(**{**DRIFT, "seed": 1})}
    parallel = memory_drifts(configs, [9, 12], jobs=2, store=RunStore(tmp_path))
    assert parallel["b"] == memory_drift(configs["b"], [9, 12])
    assert parallel["a"].probes != parallel["b"].probes


def test_memory_drifts_keeps_each_measurement_as_a_record_and_loads_it(tmp_path, monkeypatch):
    import mslib.memory_probe as probe
    from mslib.run.records import RunStore

    measured = []
    real = probe.memory_drift
    monkeypatch.setattr(probe, "memory_drift", lambda cfg, at: measured.append((cfg.seed, list(at))) or real(cfg, at))
    configs = {"a": TrainConfig(**DRIFT), "b": TrainConfig(**{**DRIFT, "seed": 1})}
    store = RunStore(tmp_path, sets=[])
    first = probe.memory_drifts(configs, [12, 9], store=store)
    assert measured == [(0, [12, 9]), (1, [12, 9])] and len(list(tmp_path.glob("*.json"))) == 2
    again = probe.memory_drifts(configs, [9, 12], store=store)  # the same probes, another order: loaded
    assert again == first and len(measured) == 2
    assert list(again) == ["a", "b"]
    probe.memory_drifts({"b": configs["b"]}, [12], store=store)  # other probes: measured again
    assert measured[-1] == (1, [12]) and len(list(tmp_path.glob("*.json"))) == 3


def test_memory_pulls_keeps_each_measurement_as_a_record_and_loads_it_without_the_model(tmp_path, monkeypatch):
    import mslib.memory_probe as probe
    from mslib.run.records import RunStore
    from mslib.run.trainer import fit

    trained = []
    real = probe.train_or_load
    monkeypatch.setattr(probe, "train_or_load", lambda cfg, store, **kw: trained.append(cfg.seed) or real(
        cfg, store, **kw))
    pull_run = {k: v for k, v in DRIFT.items() if not k.startswith("memory")}
    configs = {"a": TrainConfig(**pull_run), "b": TrainConfig(**{**pull_run, "seed": 1})}
    store = RunStore(tmp_path, sets=[])
    first = probe.memory_pulls(configs, 24, seed=2, store=store)
    assert trained == [0, 1] and first["a"] == memory_pull_of_run(configs["a"], fit(configs["a"]).model, 24, seed=2)
    for run in tmp_path.glob("runs/*"):  # a record set keeps no checkpoints: the kept measurement needs none
        for f in run.glob("checkpoint.pt"):
            f.unlink()
    assert probe.memory_pulls(configs, 24, seed=2, store=store) == first and trained == [0, 1]
    again = probe.memory_pulls({"b": configs["b"]}, 20, seed=2, store=store)  # another memory size: measured
    assert trained == [0, 1, 1] and again["b"] != first["b"]
