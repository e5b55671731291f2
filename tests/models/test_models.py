"""Registry, backbones, band adaptation, weights files, preprocessing, checkpoints."""

import numpy as np
import pytest
import torch
import torchvision

from raydal.exceptions import ConfigError, ModelError
from raydal.models import (
    ModelSpec,
    adapt_first_conv_weight,
    create_model,
    list_models,
    load_checkpoint,
    load_weights_into,
    preprocess,
    read_checkpoint_meta,
    save_checkpoint,
)


def test_registry_lists_the_backbones_and_unknown_name_lists_them():
    assert {"densenet121", "resnet18", "resnet50", "smallcnn"} <= set(list_models())
    with pytest.raises(ModelError, match="Unknown model 'vgg16'.*densenet121.*smallcnn"):
        create_model("vgg16", num_classes=3, in_channels=3)


@pytest.mark.parametrize("bands", [3, 4, 12])
def test_densenet121_shapes(bands):
    model = create_model("densenet121", num_classes=15, in_channels=bands, ll=True, seed=0).eval()
    with torch.no_grad():
        out = model(torch.rand(2, bands, 32, 32))
    assert out.logits.shape == (2, 15)
    assert out.embeddings.shape == (2, 1024)
    assert [tuple(f.shape) for f in out.features] == [(2, 256, 8, 8), (2, 512, 4, 4), (2, 1024, 2, 2), (2, 1024, 1, 1)]
    assert out.pred_loss.shape == (2,)


def test_densenet121_parameter_counts_match_the_paper():
    # Table I: 7.33 M trainable parameters with the LL module, 6.97 M without (17 classes, RGB).
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert round(count(create_model("densenet121", 17, 3, ll=True)) / 1e6, 2) == 7.33
    assert round(count(create_model("densenet121", 17, 3, ll=False)) / 1e6, 2) == 6.97
    assert create_model("smallcnn", 17, 3).ll is None and not ModelSpec("smallcnn", 17, 3).ll  # LL only when asked


@pytest.mark.parametrize("name,dim,n_maps", [("resnet18", 512, 4), ("resnet50", 2048, 4), ("smallcnn", 64, 3)])
def test_other_backbones(name, dim, n_maps):
    model = create_model(name, num_classes=5, in_channels=4, ll=False).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 4, 32, 32))
    assert out.embeddings.shape == (2, dim) and len(out.features) == n_maps
    assert out.pred_loss is None and model.ll is None


def test_smallcnn_is_small_and_seeded():
    a, b = create_model("smallcnn", 17, 3, seed=1), create_model("smallcnn", 17, 3, seed=1)
    assert 10_000 < sum(p.numel() for p in a.parameters()) < 100_000
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = create_model("smallcnn", 17, 3, seed=2)
    assert not torch.equal(a.backbone.stage1[0].weight, c.backbone.stage1[0].weight)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="'num_classes'.*>= 1. Got 0"):
        create_model("smallcnn", num_classes=0, in_channels=3)
    with pytest.raises(ConfigError, match="'in_channels'"):
        create_model("smallcnn", num_classes=2, in_channels="3")


def test_detach_ll_stops_ll_gradient_into_backbone():
    model = create_model("smallcnn", 3, 3, ll=True, seed=0)
    x = torch.rand(4, 3, 32, 32)
    model(x).pred_loss.sum().backward()
    assert model.backbone.stage1[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model(x, detach_ll=True).pred_loss.sum().backward()
    assert model.backbone.stage1[0].weight.grad is None
    assert model.ll.out.weight.grad.abs().sum() > 0


def test_adapt_first_conv_weight():
    w = torch.randn(8, 3, 3, 3)
    same = adapt_first_conv_weight(w, 3)
    assert same is w
    w4 = adapt_first_conv_weight(w, 4)
    assert w4.shape == (8, 4, 3, 3)
    torch.testing.assert_close(w4[:, :3], w * 0.75)
    torch.testing.assert_close(w4[:, 3], w.mean(1) * 0.75)
    w12 = adapt_first_conv_weight(w, 12, rgb_bands=(3, 2, 1))
    torch.testing.assert_close(w12[:, 3], w[:, 0] * 0.25)
    torch.testing.assert_close(w12[:, 1], w[:, 2] * 0.25)
    torch.testing.assert_close(w12[:, 0], w.mean(1) * 0.25)
    # The band sum is kept: a constant image gets the RGB model's first-layer response.
    for adapted in (w4, w12, adapt_first_conv_weight(w, 1)):
        torch.testing.assert_close(adapted.sum(1), w.sum(1))
    with pytest.raises(ModelError, match="only 3-band"):
        adapt_first_conv_weight(torch.randn(8, 4, 3, 3), 12)
    with pytest.raises(ModelError, match="rgb_bands"):
        adapt_first_conv_weight(w, 4, rgb_bands=(0, 1, 4))


def test_torchvision_weights_file_is_adapted_to_four_bands(tmp_path):
    tv = torchvision.models.resnet18(weights=None)  # stands in for an ImageNet file on disk
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(tv.state_dict(), path)
    model = create_model("resnet18", num_classes=15, in_channels=4, weights=str(path))
    torch.testing.assert_close(model.backbone.layer3[0].conv1.weight, tv.layer3[0].conv1.weight)
    torch.testing.assert_close(model.backbone.conv1.weight[:, :3], tv.conv1.weight * 0.75)
    torch.testing.assert_close(model.backbone.conv1.weight[:, 3], tv.conv1.weight.mean(1) * 0.75)
    assert model.head.out_features == 15  # the ImageNet fc was dropped


def test_densenet_legacy_keys_and_state_dict_wrapper(tmp_path):
    tv = torchvision.models.densenet121(weights=None)
    state = {}
    for k, v in tv.state_dict().items():  # torchvision's zoo files use "norm.1", not "norm1",
        if not k.endswith("num_batches_tracked"):  # and predate BatchNorm's counter
            state[k.replace("denselayer1.norm1.", "denselayer1.norm.1.")] = v
    assert any(".norm.1." in k for k in state)
    path = tmp_path / "densenet.pth"
    torch.save({"state_dict": state}, path)
    model = create_model("densenet121", num_classes=17, in_channels=3, weights=str(path))
    torch.testing.assert_close(
        model.backbone.features.denseblock1.denselayer1.norm1.weight,
        tv.features.denseblock1.denselayer1.norm1.weight,
    )
    torch.testing.assert_close(model.backbone.features.conv0.weight, tv.features.conv0.weight)


def test_bad_weights_files_raise_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_model("smallcnn", 3, 3, weights=str(tmp_path / "nope.pt"))
    wrong = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(ModelError, match="does not fit DenseNet121Backbone: missing"):
        create_model("densenet121", 3, 3, weights=str(wrong))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="Could not read"):
        create_model("smallcnn", 3, 3, weights=str(junk))


def test_raydal_model_file_transfers_the_backbone_only(tmp_path):
    src = create_model("smallcnn", num_classes=17, in_channels=3, seed=0)
    save_checkpoint(tmp_path / "ckpt", src)
    dst = create_model("smallcnn", num_classes=5, in_channels=3, weights=str(tmp_path / "ckpt" / "model.pt"))
    for p, q in zip(src.backbone.parameters(), dst.backbone.parameters()):
        torch.testing.assert_close(p, q)
    assert dst.head.out_features == 5


def test_preprocess():
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 4), dtype=np.uint8)
    x = preprocess(images)
    assert x.dtype == torch.float32 and x.shape == (2, 4, 8, 6) and x.is_contiguous()
    assert x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(x[1, 2], torch.from_numpy(images[1, :, :, 2]).float() / 255)
    torch.testing.assert_close(preprocess(torch.from_numpy(images)), x)
    with pytest.raises(ConfigError, match="uint8"):
        preprocess(images.astype(np.float32))
    with pytest.raises(ConfigError, match=r"\[N, H, W, B\]"):
        preprocess(images[0])


def test_checkpoint_round_trip(tmp_path):
    model = create_model("smallcnn", 4, 12, ll=True, ll_hidden=8, seed=0, rgb_bands=(3, 2, 1))
    folder = save_checkpoint(tmp_path / "ckpt", model, extra={"epoch": 3})
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.pt"]
    meta = read_checkpoint_meta(folder)
    assert meta["extra"] == {"epoch": 3}
    assert ModelSpec.from_dict(meta["model"]) == ModelSpec("smallcnn", 4, 12, None, True, 8, (3, 2, 1))
    loaded = load_checkpoint(folder)
    assert not loaded.training
    x = torch.rand(3, 12, 32, 32)
    model.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.pred_loss, b.pred_loss)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ModelError, match="not a raydal checkpoint folder"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path / "a", create_model("smallcnn", 4, 3))
    with pytest.raises(ModelError, match="num_classes: checkpoint 4 vs model 5"):
        load_weights_into(create_model("smallcnn", 5, 3), tmp_path / "a")
    with pytest.raises(ModelError, match="JSON"):
        save_checkpoint(tmp_path / "b", create_model("smallcnn", 4, 3), extra={"x": object()})
