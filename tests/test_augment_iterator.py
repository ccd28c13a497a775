"""Device-side augmentation and the batch iterator."""
import numpy as np
import pytest
import torch

from fer_utils.data import BatchIterator, BatchMix, create_augment, list_augments, subject_holdout, to_model_input

IMAGES = np.random.default_rng(0).integers(0, 256, (50, 48, 48), dtype=np.uint8)
CLIPS = np.random.default_rng(1).integers(0, 256, (20, 3, 48, 48), dtype=np.uint8)


@pytest.mark.parametrize("name", list_augments())
def test_augment_shapes_dtype_range(name):
    aug = create_augment(name)
    x = aug(torch.from_numpy(IMAGES), torch.Generator().manual_seed(0))
    assert x.shape == (50, 1, 48, 48) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    c = aug(torch.from_numpy(CLIPS), torch.Generator().manual_seed(0))
    assert c.shape == (20, 3, 1, 48, 48)


def test_augment_none_is_exact_conversion():
    x = to_model_input(IMAGES)
    torch.testing.assert_close(x[:, 0], torch.from_numpy(IMAGES).float() / 255)


def test_augment_deterministic_under_seed_and_varies_otherwise():
    aug = create_augment("strong")
    batch = torch.from_numpy(IMAGES)
    a = aug(batch, torch.Generator().manual_seed(3))
    b = aug(batch, torch.Generator().manual_seed(3))
    c = aug(batch, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - to_model_input(IMAGES)).abs().mean() > 0.05  # it really changes images


def test_same_transform_on_every_frame_of_a_clip():
    clip = np.repeat(IMAGES[:8, None], 3, axis=1)  # identical frames
    out = create_augment("strong")(torch.from_numpy(clip), torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_flip_only_mirrors():
    aug = create_augment("none", flip=1.0)
    out = aug(torch.from_numpy(IMAGES[:4]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, to_model_input(IMAGES[:4]).flip(-1), atol=1e-5, rtol=0)


def test_crop_is_a_resized_window_of_the_image():
    """A ramp image: a crop of side c at offset o shows the ramp scaled by c and shifted, so each row of
    the warped image is the original's values over a window of c * 48 pixels inside the image."""
    ramp = np.tile(np.linspace(0, 255, 48).round().astype(np.uint8), (6, 48, 1))
    aug = create_augment("none", crop=(40 / 48, 44 / 48))
    out = aug(torch.from_numpy(ramp), torch.Generator().manual_seed(0))[:, 0, 24]  # one row per image
    span = (out[:, -1] - out[:, 0]) * 48  # pixels of the original the row covers (the ramp: 1/47 a pixel)
    assert ((span > 39.8) & (span < 44.2)).all() and span.std() > 0.3  # 40-44 px, not all the same
    assert (out[:, 0] >= 0).all() and (out[:, -1] <= 1).all() and (torch.diff(out, dim=1) > 0).all()
    with pytest.raises(ValueError, match="crop"):
        create_augment("none", crop=(0.9, 1.2))


def test_mixup_and_cutmix_mix_each_item_with_the_reversed_batch():
    x = to_model_input(IMAGES[:6])
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    mixed, lam = BatchMix(mixup_alpha=0.4)(x, np.random.default_rng(0))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))
    targets = BatchMix.targets(labels, lam, 7)
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    assert targets[0, 0] == pytest.approx(lam) and targets[0, 5] == pytest.approx(1 - lam)

    mixed, lam = BatchMix(cutmix_alpha=1.0)(x, np.random.default_rng(1))
    changed = (mixed != x).flatten(0, 1).any(0)  # (H, W): pixels taken from the partner
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    expected = x.clone()
    expected[..., top:bottom, left:right] = x.flip(0)[..., top:bottom, left:right]
    assert torch.equal(mixed, expected)  # one box, the same for every item, pasted from its partner
    assert 1 - lam == pytest.approx((bottom - top) * (right - left) / 48 ** 2)  # lam: the area kept

    both = BatchMix(mixup_alpha=0.4, cutmix_alpha=1.0)
    again = [both(x, np.random.default_rng(5)) for _ in range(2)]
    assert torch.equal(again[0][0], again[1][0]) and again[0][1] == again[1][1]  # same generator, same mix
    kinds = {bool(((both(x, rng)[0] - x) == 0).float().mean() > 0.5) for rng in map(np.random.default_rng, range(8))}
    assert kinds == {True, False}  # CutMix leaves most pixels alone, mixup none


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to compare with the CPU")
def test_cpu_rng_gives_the_same_batches_on_cuda():
    labels = np.arange(50) % 7
    batches = {device: list(BatchIterator(IMAGES, labels, batch_size=16, device=device, seed=1, cpu_rng=True,
                                          augment=create_augment("strong")))
               for device in ("cpu", "cuda")}
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(batches["cpu"], batches["cuda"]):
        assert torch.equal(y_cpu, y_gpu.cpu())
        torch.testing.assert_close(x_cpu, x_gpu.cpu(), atol=1e-4, rtol=0)

def test_iterator_covers_epoch_and_is_reproducible():
    labels = np.arange(50) % 7
    it = BatchIterator(IMAGES, labels, batch_size=16, device="cpu", augment=create_augment("standard"), seed=1)
    assert len(it) == 4
    first = list(it)
    seen = torch.cat([y for _, y in first])
    assert sorted(seen.tolist()) == sorted(labels.tolist())
    second = list(it)  # next epoch: different order
    assert not torch.equal(first[0][1], second[0][1])
    it.set_epoch(0)
    again = list(it)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))


def test_iterator_clips_and_drop_last_and_errors(ckplus48_clips):
    it = BatchIterator(ckplus48_clips, batch_size=100, device="cpu", drop_last=True, shuffle=False)
    batches = list(it)
    assert len(batches) == 3 and batches[0][0].shape == (100, 3, 1, 48, 48)
    with pytest.raises(ValueError, match="uint8"):
        BatchIterator(IMAGES.astype(np.float32), np.zeros(50), device="cpu")


def test_subject_holdout_is_subject_disjoint(ckplus48_clips):
    train, held = subject_holdout(ckplus48_clips, test_size=0.2, seed=0)
    subjects = ckplus48_clips.subjects
    assert not set(subjects[train]) & set(subjects[held])
    assert len(train) + len(held) == len(ckplus48_clips)
