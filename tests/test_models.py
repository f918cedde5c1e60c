"""mslib.models: shapes, unit norm, pooling, BN freezing, Cadene state-dict compatibility, verified weights."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from mslib import models as M
from mslib.data import DatasetError


def _cadene_module():
    """Cadene's ``bninception.py`` loaded as a file (the ``pretrainedmodels`` package __init__ needs extra deps)."""
    paths = [p for d in sys.path for p in glob.glob(f"{d}/pretrainedmodels/models/bninception.py")]
    if not paths:
        return None
    spec = importlib.util.spec_from_file_location("cadene_bninception", paths[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cadene():
    return _cadene_module()


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                vals = torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name else \
                    0.1 * torch.randn(t.shape, generator=g)
                t.copy_(vals)


# Fallback when ``pretrainedmodels`` is not installed: facts read off Cadene's bninception.py (@87e97515) by
# instantiating it once: 485 state-dict entries (conv weight+bias, BN weight/bias/running_mean/running_var/
# num_batches_tracked, last_linear) and 11,295,240 parameters, plus a sample of names and shapes.
CADENE_N_KEYS = 485
CADENE_N_PARAMS = 11_295_240
CADENE_SAMPLE = {
    "conv1_7x7_s2.weight": (64, 3, 7, 7),
    "conv1_7x7_s2_bn.running_var": (64,),
    "conv2_3x3_reduce.weight": (64, 64, 1, 1),
    "conv2_3x3.weight": (192, 64, 3, 3),
    "inception_3a_1x1.weight": (64, 192, 1, 1),
    "inception_3a_pool_proj.weight": (32, 192, 1, 1),
    "inception_3c_3x3.weight": (160, 128, 3, 3),
    "inception_3c_double_3x3_2_bn.bias": (96,),
    "inception_4e_double_3x3_2.weight": (256, 256, 3, 3),
    "inception_5a_1x1.weight": (352, 1056, 1, 1),
    "inception_5b_double_3x3_2.weight": (224, 224, 3, 3),
    "inception_5b_pool_proj.weight": (128, 1024, 1, 1),
    "last_linear.weight": (1000, 1024),
    "last_linear.bias": (1000,),
}


def test_bninception_state_dict_matches_documented_keys():
    sd = M.BNInception().state_dict()
    assert len(sd) == CADENE_N_KEYS
    assert sum(p.numel() for p in M.BNInception().parameters()) == CADENE_N_PARAMS
    for key, shape in CADENE_SAMPLE.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("inception_3c_1x1") or k.startswith("inception_4e_pool_proj") for k in sd)


def test_bninception_matches_cadene_definition(cadene):
    if cadene is None:
        pytest.skip("pretrainedmodels not installed; the documented key list test covers the state dict")
    ref, ours = cadene.BNInception(), M.BNInception()
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ours.state_dict().items()}
    _randomize(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.eval()
    ours.eval()
    x = 50 * torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.features(x), ref.features(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("backbone", "in_channels", "size"), [
    ("smallcnn", 1, 32), ("smallcnn", 3, 32), ("bninception", 3, 64), ("resnet50", 3, 64), ("googlenet", 3, 64),
])
def test_output_shape_and_unit_norm(backbone, in_channels, size):
    torch.manual_seed(0)
    model = M.build_model(backbone, 24, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 24)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_head_init_and_pooling_options():
    torch.manual_seed(0)
    mx = M.build_model("smallcnn", 16, in_channels=1, pooling="max").eval()
    av = M.build_model("smallcnn", 16, in_channels=1, pooling="avg").eval()
    av.load_state_dict(mx.state_dict())
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        fmap = mx.backbone.features(x)
        torch.testing.assert_close(mx.pooled(x), fmap.amax(dim=(2, 3)))
        torch.testing.assert_close(av.pooled(x), fmap.mean(dim=(2, 3)))
        torch.testing.assert_close(av(x), torch.nn.functional.normalize(av.pooled(x) @ av.head.weight.T, dim=1))
    assert torch.all(mx.head.bias == 0)
    # kaiming_normal fan_out (gain sqrt(2)): std = sqrt(2 / out_features) = sqrt(2/16)
    big = M.build_model("smallcnn", 256, in_channels=1)
    assert big.head.weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    with pytest.raises(ValueError, match="pooling"):
        M.build_model("smallcnn", 8, in_channels=1, pooling="gem")
    with pytest.raises(ValueError, match="unknown backbone"):
        M.build_model("vgg16")
    with pytest.raises(ValueError, match="3-channel"):
        M.build_model("resnet50", in_channels=1)


def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_stats_keeps_running_stats_while_affine_trains(freeze):
    torch.manual_seed(0)
    model = M.build_model("smallcnn", 8, in_channels=1)
    model.train()
    if freeze:
        M.freeze_bn_stats(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(6, 1, 32, 32)).pow(3).sum()
    loss.backward()
    opt.step()
    after = model.state_dict()
    stats = [k for k in before if "running_" in k or "num_batches" in k]
    # SmallCNN's convs have no bias, so its 1-D weights/biases are exactly the BN affine γ/β.
    affine = [k for k in before if "body" in k and k.split(".")[-1] in ("weight", "bias") and before[k].ndim == 1]
    assert stats and affine
    unchanged = all(torch.equal(before[k], after[k]) for k in stats)
    assert unchanged == freeze
    assert all(not torch.equal(before[k], after[k]) for k in affine)
    assert model.training and all(m.training != freeze for m in _bn_layers(model))
    model.train()  # undoes the freeze: it must be re-applied after every model.train()
    assert all(m.training for m in _bn_layers(model))


def test_channels_last_equals_contiguous_on_cpu():
    torch.manual_seed(0)
    model = M.build_model("bninception", 16).eval()
    x = torch.randn(1, 3, 96, 96) * 50
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ pretrained weights
@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def _fake_weights(tmp_path: Path) -> tuple[Path, dict]:
    torch.manual_seed(3)
    state = M.SmallCNN(in_channels=1).state_dict()
    state = {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in state.items()}
    path = tmp_path / "src" / "tiny-cnn.pth"
    path.parent.mkdir()
    torch.save(state, path)
    return path, state


def test_named_weights_download_once_verify_and_load(tmp_path, hub, monkeypatch):
    path, state = _fake_weights(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = M.WeightsSpec("smallcnn", path.as_uri(), digest)
    monkeypatch.setitem(M.PRETRAINED, "smallcnn-fake", spec)
    model = M.build_model("smallcnn", 8, in_channels=1, pretrained="smallcnn-fake")
    for k, v in state.items():
        assert torch.equal(model.backbone.state_dict()[k], v)
    cached = hub / "tiny-cnn.pth"
    assert cached.is_file() and not [p for p in hub.iterdir() if p.name.endswith(".part")]
    path.unlink()  # a second build must use the cache, not the URL
    M.build_model("smallcnn", 8, in_channels=1, pretrained="smallcnn-fake")
    # A corrupted cache is an error, not a silent reload.
    cached.write_bytes(cached.read_bytes()[:-10])
    with pytest.raises(M.ChecksumError, match="delete the file"):
        M.build_model("smallcnn", 8, in_channels=1, pretrained="smallcnn-fake")


def test_wrong_checksum_leaves_no_file(tmp_path, hub, monkeypatch):
    path, _ = _fake_weights(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(M.PRETRAINED, "smallcnn-bad", M.WeightsSpec("smallcnn", path.as_uri(), "0" * 64))
    with pytest.raises(M.ChecksumError, match=f"tiny-cnn.pth .*sha256 is {digest}, expected 0{{64}}") as info:
        M.build_model("smallcnn", 8, in_channels=1, pretrained="smallcnn-bad")
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)  # what the CLIs catch
    assert not hub.exists() or not list(hub.iterdir())


@pytest.mark.parametrize(("prefix_len", "ok"), [(8, True), (16, True), (7, False)])
def test_torchvision_style_sha256_prefix(tmp_path, hub, prefix_len, ok):
    """torchvision names weights ``<name>-<first 8 hex digits of the sha256>.pth``: a prefix of >= 8 digits is
    checked as a prefix; a shorter one is refused rather than trusted."""
    path, _ = _fake_weights(tmp_path)
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:prefix_len]
    if ok:
        assert M.download_weights(path.as_uri(), prefix.upper()).read_bytes() == path.read_bytes()
    else:
        with pytest.raises(M.ChecksumError, match=f"expected {prefix}:"):
            M.download_weights(path.as_uri(), prefix)
        assert not list(hub.iterdir())


def test_non_weights_files_and_mismatches_are_clear_errors(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch weights file"):
        M.build_model("smallcnn", 8, in_channels=1, pretrained=text)
    obj = tmp_path / "object.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, obj)  # a pickled module: refused by weights_only=True
    with pytest.raises(ValueError, match="weights_only"):
        M.load_weights(obj)
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], lst)
    with pytest.raises(ValueError, match="state dict"):
        M.load_weights(lst)
    path, _ = _fake_weights(tmp_path)
    with pytest.raises(ValueError, match="do not fit"):
        M.build_model("smallcnn", 8, in_channels=3, pretrained=path)  # 1-channel weights, 3-channel model
    with pytest.raises(ValueError, match="neither a file"):
        M.build_model("smallcnn", 8, in_channels=1, pretrained=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="for bninception"):
        M.build_model("resnet50", pretrained="bninception-imagenet")


def test_named_weights_table():
    spec = M.PRETRAINED["bninception-imagenet"]
    assert spec.url == "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"
    assert spec.sha256.startswith("52deb4733") and len(spec.sha256) == 64
    for name in ("resnet50-imagenet", "googlenet-imagenet"):
        s = M.PRETRAINED[name]
        assert s.filename.split("-")[-1].split(".")[0] == s.sha256  # torchvision's hash-prefix convention
