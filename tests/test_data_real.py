"""The loaders on the real FER2013 and CK+48 files in $FER_DATA_DIR."""
import numpy as np
import pytest

from fer_utils.data import FER2013_CLASSES, make_clips, official_test_split, subject_kfold

TRAINING_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830,
                   "surprise": 3171, "neutral": 4965}
CK48_CLIP_COUNTS = {"surprise": 83, "happy": 69, "disgust": 59, "angry": 45, "sad": 28, "fear": 25,
                    "contempt": 18}


def test_fer2013_splits_and_class_counts(fer2013):
    assert fer2013.classes == FER2013_CLASSES
    assert fer2013.images.shape[1:] == (48, 48) and fer2013.images.dtype == np.uint8
    assert len(fer2013.split("Training")) == 28709
    assert len(fer2013.split("PublicTest")) == 3589
    assert fer2013.split("Training").class_counts().to_dict() == TRAINING_COUNTS
    assert fer2013.skipped == {}
    assert fer2013.meta["source"].iat[0] == "fer2013.csv.gz:2"


def test_fer2013_missing_private_test_falls_back_with_warning(fer2013):
    with pytest.warns(UserWarning, match="PrivateTest is not in this file"):
        assert official_test_split(fer2013) == "PublicTest"


def test_fer2013_pixels_look_like_faces(fer2013):
    sample = fer2013.images[:500].astype(float)
    assert 60 < sample.mean() < 200 and sample.std() > 30  # real photographs, not blank rows


def test_ckplus48_frames_clips_and_subjects(ckplus48_frames, ckplus48_clips):
    assert len(ckplus48_frames) == 981
    assert ckplus48_clips.images.shape == (327, 3, 48, 48)
    assert ckplus48_clips.meta["subject"].nunique() == 118
    assert ckplus48_clips.class_counts().to_dict() == CK48_CLIP_COUNTS
    # Frames of a clip are in temporal order: the source file names' frame numbers increase.
    first = ckplus48_frames.meta.groupby("sequence")["source"].apply(list).iloc[0]
    numbers = [int(s.rsplit("_", 1)[1].split(".")[0]) for s in first]
    assert numbers == sorted(numbers) and len(numbers) == 3


def test_ckplus48_clip_matches_its_frames(ckplus48_frames, ckplus48_clips):
    seq = ckplus48_clips.meta["sequence"].iat[5]
    frames = ckplus48_frames.subset(ckplus48_frames.meta["sequence"] == seq)
    np.testing.assert_array_equal(ckplus48_clips.images[5], frames.images[np.argsort(frames.meta["frame"])])


def test_ckplus48_subject_folds_never_share_subjects(ckplus48_clips):
    folds = subject_kfold(ckplus48_clips, k=10, seed=0)
    subjects = ckplus48_clips.subjects
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(327))  # every clip tested exactly once
    for train, test in folds:
        assert not set(subjects[train]) & set(subjects[test])
        assert len(train) + len(test) == 327


def test_sliding_windows_on_real_sequences(ckplus48_frames):
    clips = make_clips(ckplus48_frames, length=2, window="sliding")
    assert len(clips) == 327 * 2 and clips.meta["window"].max() == 1


def test_exploration_statistics_on_fer2013(fer2013):
    from fer_utils.data.stats import class_balance, duplicate_summary, pixel_statistics

    balance = class_balance(fer2013)
    assert balance.loc["happy", "Training"] == 7215 and balance["share"].sum() == pytest.approx(1.0)
    stats = pixel_statistics(fer2013)
    assert stats["images"].sum() == len(fer2013) and stats["mean"].between(60, 200).all()
    dup = duplicate_summary(fer2013)
    # FER2013 is known to contain exact duplicates, some across the Training/PublicTest boundary.
    assert dup["duplicate_groups"] > 0 and 0 < dup["groups_across_splits"] <= dup["duplicate_groups"]
