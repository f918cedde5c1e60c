"""mslib.run.trainer (with mslib.run.config, .protocol, .runs): the official LR schedule, strict configs, exact
resume, and record reuse/staleness."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mslib.run import trainer
from mslib.run.config import TrainConfig
from mslib.run.protocol import eval_iterations, evaluations_on_test, improves_selection, official_best_test
from mslib.run.records import RunStore
from mslib.run.runs import train_or_load
from mslib.run.trainer import FitResult, build_run, build_scheduler, fit, lr_factor, train_iteration, train_loader

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny(**overrides: object) -> TrainConfig:
    """A seconds-long run on the embedded glyph dataset."""
    base = dict(dataset_options={"classes": 40, "images_per_class": 12}, iterations=12, p=4, k=3, embedding_dim=16,
                val_fraction=0.25, eval_every=6, log_every=3, checkpoint_every=4, ks=[1, 2], lr=1e-3)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize(
    ("iteration", "expected"),
    # warm-up 10 iterations from factor 0.01 (official WarmupMultiStepLR: f = w(1-a) + a, a = it/10),
    # then ×0.1 at 20 and again at 30
    [(0, 0.01), (5, 0.01 * 0.5 + 0.5), (10, 1.0), (19, 1.0), (20, 0.1), (29, 0.1), (30, 0.01), (99, 0.01)],
)
def test_lr_factor_is_the_official_warmup_multistep(iteration: int, expected: float) -> None:
    cfg = TrainConfig(warmup_iterations=10, warmup_factor=0.01, milestones=[20, 30], gamma=0.1)
    assert lr_factor(iteration, cfg) == pytest.approx(expected, rel=1e-12)


def official_lrs(base_lr: float, updates: int, *, warmup_iters: int, warmup_factor: float, milestones: list[int],
                 gamma: float) -> list[float]:
    """The LR of each update in the official loop, written out as a plain loop (no mslib code).

    Official ``WarmupMultiStepLR`` (a torch 1.1 ``_LRScheduler``): its constructor takes one step (last_epoch -1 -> 0);
    the training loop calls ``scheduler.step()`` (last_epoch += 1) and only then ``optimizer.step()``.
    """
    last_epoch = 0
    lrs = []
    for _ in range(updates):
        last_epoch += 1  # scheduler.step() at the top of the iteration
        factor = 1.0
        if last_epoch < warmup_iters:
            a = last_epoch / warmup_iters
            factor = warmup_factor * (1 - a) + a
        drops = sum(1 for m in milestones if m <= last_epoch)  # bisect_right(milestones, last_epoch)
        lrs.append(base_lr * factor * gamma**drops)  # optimizer.step() uses this value
    return lrs


def _scheduled_lrs(cfg: TrainConfig) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(cfg.iterations):
        lrs.append(optimizer.param_groups[0]["lr"])  # what this update uses
        optimizer.step()
        scheduler.step()
    return lrs


def _official_scheduler_lrs(cfg: TrainConfig) -> list[float]:
    """The official scheduler class (its ``get_lr`` transcribed) on torch's own scheduler base, stepped before
    ``optimizer.step()`` as the official loop does: a second, torch-driven reading of the same sequence."""
    import warnings
    from bisect import bisect_right

    class WarmupMultiStepLR(torch.optim.lr_scheduler.LRScheduler):
        def get_lr(self) -> list[float]:
            factor = 1.0
            if self.last_epoch < cfg.warmup_iterations:
                a = float(self.last_epoch) / cfg.warmup_iterations
                factor = cfg.warmup_factor * (1 - a) + a
            return [base * factor * cfg.gamma ** bisect_right(cfg.milestones, self.last_epoch)
                    for base in self.base_lrs]

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.lr)
    scheduler = WarmupMultiStepLR(optimizer)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the (official) order scheduler.step -> optimizer.step
        for _ in range(cfg.iterations):
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
    return lrs


@pytest.mark.parametrize("config", [*sorted(p.name for p in CONFIGS.glob("*.yaml")), "warmup"])
def test_lr_of_every_update_equals_the_official_loop(config: str) -> None:
    """Every shipped config, and the official defaults' warm-up (200 iterations from 0.01), update by update."""
    if config == "warmup":
        cfg = TrainConfig(lr=0.01, iterations=4000, warmup_iterations=200, warmup_factor=0.01,
                          milestones=[1000, 2000, 3000], gamma=0.1)
    else:
        cfg = TrainConfig.from_file(CONFIGS / config)
    expected = official_lrs(cfg.lr, cfg.iterations, warmup_iters=cfg.warmup_iterations,
                            warmup_factor=cfg.warmup_factor, milestones=cfg.milestones, gamma=cfg.gamma)
    assert _official_scheduler_lrs(cfg) == pytest.approx(expected, rel=1e-12, abs=0), "the plain loop is faithful"
    got = _scheduled_lrs(cfg)
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    for m in cfg.milestones:  # the drop lands on update m − 1 (0-based), i.e. the m-th update, as officially
        assert got[m - 1] == pytest.approx(got[m - 2] * cfg.gamma, rel=1e-12)


def test_fit_logs_the_official_lr_of_each_update_and_resumes_it(tmp_path: Path) -> None:
    cfg = tiny(iterations=10, warmup_iterations=4, warmup_factor=0.1, milestones=[6, 8], gamma=0.5, log_every=1,
               eval_every=0, val_fraction=0.0, checkpoint_every=0, lr=2e-3)
    expected = official_lrs(2e-3, 10, warmup_iters=4, warmup_factor=0.1, milestones=[6, 8], gamma=0.5)
    full = fit(cfg, progress=False)
    assert [h["lr"] for h in full.history] == pytest.approx(expected, rel=1e-12, abs=0)
    fit(cfg, run_dir=tmp_path, progress=False, stop_after=5)  # killed inside the schedule, resumed
    resumed = fit(cfg, run_dir=tmp_path, progress=False)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]


def test_config_rejects_unknown_and_invalid_settings() -> None:
    with pytest.raises(ValueError, match="unknown training setting.*iteratons"):
        TrainConfig.from_dict({"iteratons": 10})
    with pytest.raises(ValueError, match="unknown backbone"):
        TrainConfig(backbone="vgg")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="p ≥ 2"):
        TrainConfig(p=1)


def test_from_file_reads_a_file_and_applies_overrides_naming_unknown_settings(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("loss: contrastive\nloss_params: {pos_margin: 1.0, neg_margin: 0.5}\niterations: 9\n")
    cfg = TrainConfig.from_file(path, {"iterations": 3, "p": 4})
    assert (cfg.loss, cfg.loss_params, cfg.iterations, cfg.p, cfg.k) == (
        "contrastive", {"pos_margin": 1.0, "neg_margin": 0.5}, 3, 4, TrainConfig().k)
    assert TrainConfig.from_file(str(path)) == TrainConfig(loss="contrastive", iterations=9,
                                                           loss_params={"pos_margin": 1.0, "neg_margin": 0.5})
    assert TrainConfig.from_file(None) == TrainConfig() and TrainConfig.from_file(None, {"seed": 2}).seed == 2
    path.write_text("")
    assert TrainConfig.from_file(path) == TrainConfig(), "an empty file is the defaults"
    path.write_text("iteratons: 5\n")
    with pytest.raises(ValueError, match=rf"unknown training setting\(s\) iteratons in {re.escape(str(path))}"):
        TrainConfig.from_file(path)
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) lrr in the overrides"):
        TrainConfig.from_file(None, {"lrr": 0.1})
    path.write_text("- iterations\n")
    with pytest.raises(ValueError, match="must hold a mapping of setting names"):
        TrainConfig.from_file(path)
    path.write_text("iterations: [1\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        TrainConfig.from_file(path)
    with pytest.raises(FileNotFoundError, match="no config file"):
        TrainConfig.from_file(tmp_path / "nope.yaml")


def config_name_loss(name: str) -> tuple[str, bool]:
    """``(loss, memory?)`` a shipped config's file name states: ``_ms`` MS, ``_proxy_anchor`` Proxy-Anchor, ``_xbm``."""
    loss = "proxy_anchor" if "_proxy_anchor" in name else "multi_similarity" if "_ms" in name else "?"
    return loss, "_xbm" in name


def test_shipped_paper_configs_are_valid() -> None:
    paths = sorted(CONFIGS.glob("*.yaml"))
    configs = {path.name: TrainConfig.from_file(path) for path in paths}
    for name, cfg in configs.items():
        assert re.fullmatch(rf"[a-z0-9_]*[a-z]{cfg.embedding_dim}\.yaml", name), \
            f"{name}: the file name ends with the embedding size ({cfg.embedding_dim})"
        assert config_name_loss(name) == (cfg.loss, cfg.memory_size > 0), \
            f"{name}: the file name states the loss and the memory ({cfg.loss}, memory_size={cfg.memory_size})"
        assert cfg.official_test_selection and cfg.val_fraction == 0.0, name
        text = (CONFIGS / name).read_text()
        assert "book/sources.md#src-" in text, f"{name} cites its sources in the book"
    cub = configs["cub200_ms512.yaml"].to_dict()
    for name in ("cub200_ms64.yaml", "cub200_resnet50_ms512.yaml"):
        assert name in configs, f"missing paper run {name}"
    ms64 = configs["cub200_ms64.yaml"].to_dict()
    assert {k: v for k, v in ms64.items() if k != "embedding_dim"} == {k: v for k, v in cub.items()
                                                                         if k != "embedding_dim"}
    resnet = configs["cub200_resnet50_ms512.yaml"]
    assert resnet.backbone == "resnet50" and resnet.pretrained == "resnet50-imagenet" and resnet.pooling == "avg"
    from mslib.conventions import INPUT_CONVENTIONS

    convention = INPUT_CONVENTIONS[resnet.backbone]
    assert (convention.space, convention.mean) == ("RGB", (0.485, 0.456, 0.406)), "RGB with the ImageNet mean/std"
    assert resnet.resize == 256 and resnet.image_size == 227, "official ResNet-50: Resize(256), 227 crop"


def test_shipped_memory_configs_are_the_ms_recipe_plus_the_xbm_memory() -> None:
    """MS + XBM = the MS config of the same dataset with the XBM sample config's memory (book/sources.md#src-xbm)."""
    memory_keys = {"memory_size", "memory_start", "memory_weight", "memory_batch_loss"}
    for dataset, train_images in (("cub200", 5864), ("sop", 59551)):
        xbm = TrainConfig.from_file(CONFIGS / f"{dataset}_ms_xbm512.yaml").to_dict()
        ms = TrainConfig.from_file(CONFIGS / f"{dataset}_ms512.yaml").to_dict()
        assert {k: v for k, v in xbm.items() if k not in memory_keys} == \
            {k: v for k, v in ms.items() if k not in memory_keys}, dataset
        assert (xbm["memory_start"], xbm["memory_weight"], xbm["memory_batch_loss"]) == (1000, 1.0, True)
        assert 0 < xbm["memory_size"] <= train_images, f"{dataset}: a memory larger than the training set"


def test_shipped_proxy_anchor_config_has_the_authors_settings() -> None:
    """The Proxy-Anchor authors' code/train.py defaults (book/sources.md#src-pml), epochs counted in batches."""
    cfg = TrainConfig.from_file(CONFIGS / "cub200_proxy_anchor512.yaml")
    per_epoch = 5864 // 150  # CUB training images // batch, drop_last
    assert cfg.loss == "proxy_anchor" and cfg.loss_params == {"alpha": 32.0, "margin": 0.1, "lr_factor": 100.0}
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.p * cfg.k) == ("adamw", 1e-4, 1e-4, 150)
    assert cfg.iterations == 60 * per_epoch and cfg.eval_every == per_epoch
    assert cfg.milestones == [10 * per_epoch * i for i in range(1, 6)] and cfg.gamma == 0.5
    assert (cfg.backbone, cfg.embedding_dim, cfg.freeze_bn) == ("bninception", 512, True)
    text = (CONFIGS / "cub200_proxy_anchor512.yaml").read_text()
    assert "clip" in text and "warm" in text, "the config says what mslib's trainer does not do"


def test_cuda_request_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        fit(tiny(device="cuda"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    return fit(tiny(), run_dir=tmp_path_factory.mktemp("full"), progress=False)


def test_interrupted_then_resumed_run_equals_uninterrupted(uninterrupted: FitResult, tmp_path: Path) -> None:
    cfg = tiny()
    partial = fit(cfg, run_dir=tmp_path, progress=False, stop_after=7)  # killed between checkpoints 4 and 8
    assert not partial.completed and partial.iteration == 7
    resumed = fit(cfg, run_dir=tmp_path, progress=False)
    assert resumed.completed
    assert resumed.history == uninterrupted.history
    assert resumed.metrics == uninterrupted.metrics
    for (name, a), b in zip(resumed.model.state_dict().items(), uninterrupted.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), f"parameter {name} differs after resume"


def test_result_reports_selection_and_final(uninterrupted: FitResult) -> None:
    metrics = uninterrupted.metrics
    assert metrics["final"]["iteration"] == 12
    assert metrics["selected"]["selected_by"] == "validation R@1"
    assert metrics["selected"]["iteration"] in (0, 6, 12)
    best_val = max(e["val"]["R@1"] for e in uninterrupted.evals)
    assert metrics["selected"]["val"]["R@1"] == best_val
    assert 0.0 <= metrics["final"]["test"]["R@1"] <= 1.0
    assert "official_best_test" not in metrics  # only when asked for, and then labelled


@pytest.mark.parametrize("val_fraction", [0.0, 0.25])
def test_official_protocol_is_labelled_and_never_selects_the_final_model(val_fraction: float) -> None:
    """Official loop: test evals before update 0 and every eval_every updates, none after the last update."""
    result = fit(tiny(val_fraction=val_fraction, official_test_selection=True, iterations=8, eval_every=3,
                      checkpoint_every=0), progress=False)
    best = result.metrics["official_best_test"]
    assert "optimistic" in best["note"] and "final model is not evaluated" in best["note"]
    assert best["evaluated_at"] == [0, 3, 6] == [e["iteration"] for e in result.evals if "test" in e]
    scores = [e["test"]["R@1"] for e in result.evals if "test" in e]
    assert best["test"]["R@1"] == max(scores)
    assert best["iteration"] == [0, 3, 6][scores.index(max(scores))], "ties keep the earliest (official strict >)"
    assert result.metrics["final"]["iteration"] == 8  # the final model is reported on its own, labelled final


def test_official_best_test_picks_the_first_maximum_and_needs_evals() -> None:
    evals = [{"iteration": i, "test": {"R@1": r}} for i, r in [(0, 0.1), (200, 0.5), (400, 0.5), (600, 0.3)]]
    assert official_best_test(evals)["iteration"] == 200
    with pytest.raises(ValueError, match="no periodic test evaluation"):
        official_best_test([{"iteration": 0, "val": {"R@1": 0.2}}])


def test_model_selection_keeps_the_first_best_validation_r1() -> None:
    def entry(r1: float) -> dict:
        return {"val": {"R@1": r1}}

    assert improves_selection(None, entry(0.0)), "the first evaluation is selected"
    assert improves_selection(entry(0.4), entry(0.5)) and not improves_selection(entry(0.5), entry(0.4))
    assert not improves_selection(entry(0.5), entry(0.5)), "a tie keeps the earlier model"


def test_train_or_load_reuses_fresh_records_and_retrains_on_other_params_or_code(tmp_path: Path) -> None:
    cfg = tiny(iterations=4, eval_every=0, val_fraction=0.0, checkpoint_every=0)
    marker = tmp_path / "notebook.py"
    marker.write_text("version = 1\n")
    store = RunStore(tmp_path)
    record, result = train_or_load(cfg, store, code_paths=[marker])
    assert not record.reused and result.completed
    saved = json.loads((tmp_path / f"{record.run_id}.json").read_text())
    assert saved["metrics"] == record.metrics == result.metrics and saved["params"]["iterations"] == 4

    def no_training(*args: object, **kwargs: object) -> FitResult:
        raise AssertionError("an up-to-date record must be reused, not retrained")

    again, nothing = train_or_load(cfg, store, fit=no_training, code_paths=[marker])
    assert again.reused and nothing is None and again == record
    with pytest.raises(AssertionError, match="must be reused"):  # other parameters: another run
        train_or_load(tiny(iterations=5, eval_every=0, val_fraction=0.0, checkpoint_every=0), store,
                      fit=no_training, code_paths=[marker])
    marker.write_text("version = 2\n")  # the code changed: the old record is stale
    with pytest.raises(AssertionError, match="must be reused"):
        train_or_load(cfg, store, fit=no_training, code_paths=[marker])


def test_train_or_load_defaults_to_the_results_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSLIB_RESULTS_DIR", str(tmp_path))
    record, _ = train_or_load(tiny(iterations=2, eval_every=0, val_fraction=0.0, checkpoint_every=0))
    assert (tmp_path / f"{record.run_id}.json").is_file() and (tmp_path / "runs" / record.run_id).is_dir()


def test_need_model_loads_the_trained_model_from_the_checkpoint(tmp_path: Path) -> None:
    cfg = tiny(iterations=4, eval_every=0, val_fraction=0.0, checkpoint_every=0)
    store = RunStore(tmp_path)
    _, trained = train_or_load(cfg, store, need_model=True)
    record, loaded = train_or_load(cfg, store, need_model=True)
    assert record.reused and loaded.completed and loaded.history == trained.history
    for a, b in zip(loaded.model.state_dict().values(), trained.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("val_fraction", "official"), [(0.0, False), (0.25, False), (0.0, True), (0.25, True)])
def test_the_cost_estimate_counts_the_test_evaluations_fit_runs(val_fraction: float, official: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluations_on_test`` (behind experiments.images_processed) equals the test embeddings fit computes."""
    calls: list[str] = []
    real = trainer.evaluate_split

    def counting(model: torch.nn.Module, sets: dict, which: str, cfg: TrainConfig) -> dict:
        calls.append(which)
        return real(model, sets, which, cfg)

    monkeypatch.setattr(trainer, "evaluate_split", counting)
    cfg = tiny(iterations=7, eval_every=3, val_fraction=val_fraction, official_test_selection=official,
               checkpoint_every=0)
    fit(cfg, progress=False)
    assert calls.count("test") == evaluations_on_test(cfg)
    expected_periodic = [0, 3, 6] if (official or val_fraction) else []
    assert eval_iterations(cfg) == expected_periodic


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mslib", "train", "--results-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_names_a_misspelt_setting_and_a_missing_dataset(tmp_path: Path) -> None:
    proc = _cli("--set", "iteratons=5", tmp_path=tmp_path)
    assert proc.returncode == 2 and "iteratons" in proc.stderr
    proc = _cli("--set", "dataset=cub200", "--set", f"data_root={tmp_path / 'nowhere'}", tmp_path=tmp_path)
    assert proc.returncode == 1
    assert "python -m mslib data download cub200" in proc.stderr
    assert not list(tmp_path.glob("*.json")), "a failed run must not leave a record"


def test_a_preset_and_its_values_are_the_same_run() -> None:
    by_name = TrainConfig(loss_params={"preset": "pml", "beta": 50})
    by_value = TrainConfig(loss_params={"alpha": 2.0, "beta": 50.0, "lam": 0.5, "epsilon": 0.1})
    assert TrainConfig() == by_name == by_value
    assert TrainConfig(loss_params={"preset": "official"}).loss_params["beta"] == 40
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(loss_params={"preset": "nope"})
    # multi_similarity's unset hyperparameters come from the pml preset; other losses get no preset
    assert TrainConfig(loss_params={"epsilon": None}).loss_params == {**by_value.loss_params, "epsilon": None}
    assert TrainConfig(loss="proxy_anchor").loss_params == {}
    with pytest.raises(ValueError, match="unknown loss 'msl'"):
        TrainConfig(loss="msl")


@pytest.mark.parametrize(("loss", "loss_params", "extra"), [
    ("proxy_anchor", {}, {}),
    ("multi_similarity", {"preset": "pml"}, {"memory_size": 30, "memory_start": 2}),
])
def test_loss_state_trains_lives_in_checkpoints_and_resumes_exactly(loss, loss_params, extra, tmp_path) -> None:
    """Proxies (at lr × lr_factor) and the cross-batch memory are part of the run: trained, saved, resumed."""
    cfg = tiny(loss=loss, loss_params=loss_params, iterations=8, checkpoint_every=4, eval_every=0, **extra)
    full = fit(cfg, progress=False)
    fit(cfg, run_dir=tmp_path, progress=False, stop_after=5)  # killed between checkpoints 4 and 8
    resumed = fit(cfg, run_dir=tmp_path, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.metrics == full.metrics
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["loss"]
    assert saved, "the loss's state (proxies / memory) is in the checkpoint"
    for name, value in build_run(cfg).loss_fn.state_dict().items():
        assert not torch.equal(saved[name], value), f"{name} did not change during training"


def test_proxy_parameters_get_their_own_learning_rate() -> None:
    run = build_run(tiny(loss="proxy_anchor", lr=1e-3, milestones=[2], gamma=0.5))
    model_group, proxy_group = run.optimizer.param_groups
    assert proxy_group["params"] == [run.loss_fn.proxies]
    assert (model_group["lr"], proxy_group["lr"]) == pytest.approx((1e-3, 1e-1))  # Proxy-Anchor's 100×
    assert TrainConfig(memory_size=0).memory_size == 0
    with pytest.raises(ValueError, match="memory_size"):
        TrainConfig(memory_size=-1)


def test_fit_runs_at_the_configs_thread_count_and_restores_the_callers(tmp_path: Path) -> None:
    inside: list[int] = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit(tiny(iterations=3, threads=2), run_dir=tmp_path, progress=False,
                     on_log=lambda entry: inside.append(torch.get_num_threads()))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert inside and set(inside) == {2}, "training ran at cfg.threads"
    assert after == 1, "fit restored the caller's thread count"
    assert result.config["threads"] == 2
    with pytest.raises(ValueError, match="threads must be an integer ≥ 1"):
        tiny(threads=0)


def test_channels_last_on_the_cpu_changes_the_layout_not_the_numbers() -> None:
    """channels_last (the default) trains the NHWC layout on the CPU too; the losses of a short run equal those of
    the contiguous layout to float32 rounding (oneDNN picks other kernels, so not bit for bit)."""
    losses = {}
    for layout in (True, False):
        run = build_run(tiny(channels_last=layout, iterations=4, val_fraction=0.0))
        conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == layout
        batches = iter(train_loader(run))
        losses[layout] = [float(train_iteration(run, *next(batches))[0]) for _ in range(4)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
