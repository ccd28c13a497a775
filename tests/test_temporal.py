"""Clip model families: shapes and gradients for T=3 and T=10, input checks, trunk transfer."""
from __future__ import annotations

import pytest
import torch

from fer_utils.errors import CheckpointError
from fer_utils.models.checkpoints import save_checkpoint
from fer_utils.models import count_parameters, create_model, list_models, model_entry
from fer_utils.models.temporal import init_frame_cnn_from_checkpoint, slow_fusion_schedule

FAMILIES = ("single_frame", "early_fusion", "late_fusion", "slow_fusion", "c3d", "cnn_gru", "cnn_lstm")
#: Parameters (all, 7 classes) per (family, clip length): only the fusions that mix frames early
#: grow with the clip length.
PARAMETERS = {
    ("single_frame", 3): 1_174_439, ("single_frame", 10): 1_174_439, ("early_fusion", 3): 1_175_015,
    ("early_fusion", 10): 1_177_031, ("late_fusion", 3): 1_305_767, ("late_fusion", 10): 1_305_767,
    ("slow_fusion", 3): 1_193_159, ("slow_fusion", 10): 1_267_463, ("c3d", 3): 1_304_039, ("c3d", 10): 1_304_039,
    ("cnn_gru", 3): 1_321_767, ("cnn_gru", 10): 1_321_767, ("cnn_lstm", 3): 1_371_175, ("cnn_lstm", 10): 1_371_175,
}


def test_registered_kinds():
    assert set(FAMILIES) <= set(list_models(input_kind="clip"))
    assert model_entry("frame_cnn").input_kind == "image"


@pytest.mark.parametrize("frames", [3, 10])
@pytest.mark.parametrize("name", FAMILIES)
def test_forward_backward(name, frames):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, num_frames=frames)
    out = model(torch.rand(2, frames, 1, 48, 48))
    assert out.shape == (2, 7)
    out.logsumexp(dim=1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert count_parameters(model, trainable_only=False) == PARAMETERS[name, frames]


def test_frame_cnn_image_model():
    out = create_model("frame_cnn", num_classes=7)(torch.rand(2, 1, 48, 48))
    assert out.shape == (2, 7)


def test_single_frame_is_mean_of_frame_log_probs():
    model = create_model("single_frame", num_frames=3).eval()
    x = torch.rand(2, 3, 1, 48, 48)
    frame_logits = model.frame_logits(x)
    assert frame_logits.shape == (2, 3, 7)
    torch.testing.assert_close(model(x), frame_logits.log_softmax(-1).mean(1))


@pytest.mark.parametrize(("frames", "expected"), [
    (1, [(1, 1), (1, 1), (1, 1)]),
    (3, [(2, 1), (2, 1), (1, 1)]),
    (10, [(4, 2), (2, 2), (2, 1)]),  # Karpathy et al. 2014: 10 -> 4 -> 2 -> 1
    (16, [(4, 2), (2, 2), (3, 1)]),
])
def test_slow_fusion_schedule(frames, expected):
    assert slow_fusion_schedule(frames) == expected


def test_other_sizes_and_bad_input():
    model = create_model("c3d", num_frames=4, img_size=32, width=8)
    assert model(torch.rand(1, 4, 1, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match=r"expects clips \(B, 4, 1, 32, 32\), got \(1, 4, 1, 48, 48\)"):
        model(torch.rand(1, 4, 1, 48, 48))
    with pytest.raises(ValueError, match=r"expects clips \(B, 3, 1, 48, 48\), got \(2, 5, 1, 48, 48\)"):
        create_model("early_fusion", num_frames=3)(torch.rand(2, 5, 1, 48, 48))
    with pytest.raises(ValueError, match="expects clips"):
        create_model("cnn_gru")(torch.rand(2, 1, 48, 48))
    with pytest.raises(ValueError, match="img_size must be >= 16"):
        create_model("late_fusion", img_size=8)


@pytest.fixture(scope="module")
def frame_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    source = create_model("frame_cnn", num_classes=7, width=8)
    with torch.no_grad():  # non-trivial BN statistics too
        for name, tensor in source.state_dict().items():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5) if "running_var" in name else tensor.normal_()
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "frame_cnn.pt", source, model_name="frame_cnn",
                           classes=[str(i) for i in range(7)], model_kwargs={"width": 8})
    return path, source.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_transfer_copies_trunk(name, frame_checkpoint):
    path, source = frame_checkpoint
    frames = 10 if name == "slow_fusion" else 3
    model = create_model(name, num_frames=frames, width=8)
    copied = init_frame_cnn_from_checkpoint(model, path)
    src, dst = source.state_dict(), model.state_dict()
    assert copied and all(k.startswith("features.") for k in copied)
    assert copied == sorted(k for k in src if k.startswith("features."))
    for key in copied:
        if dst[key].shape == src[key].shape:
            assert torch.equal(dst[key], src[key]), key
        elif dst[key].dim() == 5:  # 2D kernel inflated over time, divided by its length
            torch.testing.assert_close(dst[key].sum(dim=2), src[key])
        else:  # early fusion: kernel replicated over the T stacked frames, averaged
            torch.testing.assert_close(dst[key].unflatten(1, (frames, -1)).sum(dim=1), src[key])
    if name in ("single_frame", "late_fusion", "cnn_gru", "cnn_lstm"):
        assert all(torch.equal(dst[k], src[k]) for k in copied)
    assert not torch.equal(dst.get("fc.weight", torch.zeros(1)), src["fc.weight"])  # classifier not copied


@pytest.mark.parametrize("name", ["early_fusion", "slow_fusion"])
def test_transferred_trunk_matches_frame_cnn_on_a_still_clip(name, frame_checkpoint):
    """A clip of one repeated frame gives the frame CNN's trunk output after transfer."""
    path, source = frame_checkpoint
    model = create_model(name, num_frames=10, width=8).eval()
    init_frame_cnn_from_checkpoint(model, path)
    model.fc.load_state_dict(source.fc.state_dict())  # same classifier, so the outputs must agree
    frame = torch.rand(2, 1, 48, 48)
    clip = frame.unsqueeze(1).expand(2, 10, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), source(frame), rtol=1e-3, atol=1e-3)


def test_transfer_mismatch_is_explained(frame_checkpoint, tmp_path):
    path, _ = frame_checkpoint
    with pytest.raises(CheckpointError, match=r"trunk weight features\.0\.conv1\.weight has shape"):
        init_frame_cnn_from_checkpoint(create_model("cnn_gru", width=16), path)
    other = save_checkpoint(tmp_path / "vgg.pt", create_model("vgg_small"), model_name="vgg_small",
                            classes=list("abcdefg"))
    with pytest.raises(CheckpointError, match="trunk of this 'vgg_small' checkpoint differs"):
        init_frame_cnn_from_checkpoint(create_model("cnn_gru", width=8), other)
    other = save_checkpoint(tmp_path / "xc.pt", create_model("mini_xception"), model_name="mini_xception",
                            classes=list("abcdefg"))
    with pytest.raises(CheckpointError, match="train a 'frame_cnn' first"):
        init_frame_cnn_from_checkpoint(create_model("cnn_gru", width=8), other)
