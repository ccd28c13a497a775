"""Every dataset layout on fixture trees built here, including the bad inputs."""
import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_utils.errors import DatasetError, MissingDatasetError
from fer_utils.data import load_dataset, make_clips, official_test_split

RNG = np.random.default_rng(0)


def face(value: int = 128, size: int = 48) -> np.ndarray:
    img = RNG.integers(0, 40, (size, size)).astype(np.uint8)
    return cv2.add(img, value)


def write_csv(path: Path, rows: list[tuple], header="emotion,pixels,Usage", gz=False) -> Path:
    text = header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def pixels(value: int = 10, n: int = 2304) -> str:
    return " ".join([str(value)] * n)


def fer_rows(n_per_split=(4, 2, 2)) -> list[tuple]:
    rows = []
    for split, n in zip(("Training", "PublicTest", "PrivateTest"), n_per_split):
        rows += [(i % 7, pixels(i), split) for i in range(n)]
    return rows


# ---- FER2013 CSV --------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_fer2013_csv_plain_and_gz(tmp_path, gz):
    name = "fer2013.csv.gz" if gz else "fer2013.csv"
    (tmp_path / "fer2013").mkdir()
    write_csv(tmp_path / "fer2013" / name, fer_rows(), gz=gz)
    data = load_dataset("fer2013", tmp_path, cache=False)
    assert len(data) == 8 and data.images.shape == (8, 48, 48)
    assert list(data.labels[:4]) == [0, 1, 2, 3] and data.images[3, 0, 0] == 3
    assert official_test_split(data) == "PrivateTest"


def test_fer2013_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    csv = write_csv(tmp_path / "fer2013.csv", fer_rows())
    first = load_dataset("fer2013", tmp_path)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    np.testing.assert_array_equal(load_dataset("fer2013", tmp_path).images, first.images)
    write_csv(csv, fer_rows((5, 1, 1)))
    assert (load_dataset("fer2013", tmp_path).meta["split"] == "Training").sum() == 5


@pytest.mark.parametrize("bad_row, message", [
    ((3, pixels(n=2300), "Training"), r"line 4: expected 2304 pixel values, got 2300"),
    ((3, pixels().replace("10", "x", 1), "Training"), r"line 4: pixels must be integers"),
    ((9, pixels(), "Training"), r"line 4: emotion '9' is not an integer 0-6"),
    ((3, pixels(300), "Training"), r"line 4: pixel values must be in 0-255"),
    ((3, pixels(), "Validation"), r"line 4: Usage 'Validation'"),
])
def test_fer2013_bad_rows_raise_or_skip(tmp_path, bad_row, message):
    rows = fer_rows()
    rows.insert(2, bad_row)
    csv = write_csv(tmp_path / "fer2013.csv", rows)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("fer2013", csv, cache=False)
    assert str(csv) in str(err.value)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        data = load_dataset("fer2013", csv, errors="skip", cache=False)
    assert len(data) == 8 and sum(data.skipped.values()) == 1


def test_fer2013_missing_column_and_missing_file(tmp_path):
    csv = write_csv(tmp_path / "fer2013.csv", [(0, pixels())], header="emotion,pixels")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['Usage'\]"):
        load_dataset("fer2013", csv, cache=False)
    with pytest.raises(MissingDatasetError, match="Kaggle"):
        load_dataset("fer2013", tmp_path / "nowhere")


def test_fer2013_without_private_test_warns_once_and_uses_public(tmp_path):
    csv = write_csv(tmp_path / "fer2013.csv", fer_rows((3, 2, 0)))
    data = load_dataset("fer2013", csv, cache=False)
    with pytest.warns(UserWarning, match="PrivateTest"):
        assert official_test_split(data) == "PublicTest"


# ---- FER+ ---------------------------------------------------------------------------------

def test_ferplus_majority_vote_and_dropped_rows(tmp_path):
    write_csv(tmp_path / "fer2013.csv", fer_rows((4, 1, 1)))
    cols = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    votes = [
        ("Training", "a.png", 0, 8, 1, 0, 0, 0, 0, 1, 0, 0),   # happy (single votes ignored)
        ("Training", "b.png", 0, 0, 0, 0, 0, 0, 0, 7, 3, 0),   # contempt
        ("Training", "", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10),       # not a face -> dropped
        ("Training", "d.png", 4, 0, 0, 4, 0, 0, 0, 0, 2, 0),   # no majority -> dropped
        ("PublicTest", "e.png", 0, 0, 0, 0, 6, 4, 0, 0, 0, 0),  # angry
        ("PrivateTest", "f.png", 0, 0, 2, 0, 0, 0, 0, 0, 8, 0),  # unknown -> dropped
    ]
    write_csv(tmp_path / "fer2013new.csv", votes, header=cols)
    data = load_dataset("ferplus", tmp_path)
    assert data.classes[-1] == "contempt" and len(data.classes) == 8
    assert [data.classes[i] for i in data.labels] == ["happy", "contempt", "angry"]
    assert data.skipped == {"no_majority_or_not_a_face": 3}
    assert list(data.meta["source"]) == ["fer2013.csv:2", "fer2013.csv:3", "fer2013.csv:6"]
    assert data.images[1, 0, 0] == 1  # row order kept: second CSV row


def test_ferplus_row_count_mismatch(tmp_path):
    write_csv(tmp_path / "fer2013.csv", fer_rows((2, 0, 0)))
    cols = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    write_csv(tmp_path / "fer2013new.csv", [("Training", "a", 10, 0, 0, 0, 0, 0, 0, 0, 0, 0)], header=cols)
    with pytest.raises(DatasetError, match="1 FER\\+ rows but the FER2013 CSV has 2"):
        load_dataset("ferplus", tmp_path)


# ---- image folders ------------------------------------------------------------------------

def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_fer2013_image_folders(tmp_path):
    root = tmp_path / "fer2013"
    for split, n in (("train", 3), ("test", 2)):
        for emotion in ("angry", "happy", "neutral"):
            for i in range(n):
                write_image(root / split / emotion / f"im{i}.jpg", face(100))
    data = load_dataset("fer2013_folders", tmp_path)
    assert data.classes == ("angry", "happy", "neutral")
    assert data.split("Training").class_counts().tolist() == [3, 3, 3]
    assert len(data.split("Test")) == 6


def test_generic_class_folders_with_formats_and_synonyms(tmp_path):
    write_image(tmp_path / "happiness" / "rgb.png", cv2.cvtColor(face(), cv2.COLOR_GRAY2BGR))
    write_image(tmp_path / "happiness" / "rgba.png", cv2.cvtColor(face(), cv2.COLOR_GRAY2BGRA))
    write_image(tmp_path / "Sadness" / "sixteen.png", (face().astype(np.uint16) * 256))
    write_image(tmp_path / "anger" / "big.bmp", face(50, size=100))
    data = load_dataset("folders", tmp_path)
    assert data.classes == ("angry", "happy", "sad")
    assert data.images.shape == (4, 48, 48)
    sixteen = data.images[data.meta["source"].str.contains("sixteen")][0]
    assert 120 <= sixteen.mean() <= 170  # 16-bit scaled to 8-bit, not clipped to 255


def test_class_folders_bad_inputs(tmp_path):
    write_image(tmp_path / "happy" / "ok.png", face())
    (tmp_path / "happy" / "text.jpg").write_text("not an image")
    (tmp_path / "sad").mkdir()
    with pytest.raises(DatasetError, match=r"sad: class folder contains no image files"):
        load_dataset("folders", tmp_path)
    (tmp_path / "sad").rmdir()
    with pytest.raises(DatasetError, match=r"text\.jpg: not a readable image"):
        load_dataset("folders", tmp_path)
    good = (tmp_path / "happy" / "ok.png").read_bytes()
    (tmp_path / "happy" / "text.jpg").unlink()
    (tmp_path / "happy" / "truncated.png").write_bytes(good[: len(good) // 3])
    (tmp_path / "elated").mkdir()
    write_image(tmp_path / "elated" / "x.png", face())
    with pytest.warns(UserWarning, match="skipped 2"):
        data = load_dataset("folders", tmp_path, errors="skip")
    assert len(data) == 1 and data.skipped == {"unknown_class_folder": 1, "unreadable_image": 1}


# ---- sequence layouts ---------------------------------------------------------------------

def build_ckplus(root: Path) -> None:
    """Two subjects, three labelled sequences, one unlabelled, with frames of 64x80."""
    for subject, seq, code, n in (("S005", "001", 3, 4), ("S010", "002", 7, 5), ("S010", "004", 1, 3)):
        for f in range(1, n + 1):
            write_image(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png",
                        face(20 * f, size=64))
        label = root / "Emotion" / subject / seq / f"{subject}_{seq}_{n:08d}_emotion.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"   {code:.7e}\n")
    write_image(root / "cohn-kanade-images" / "S010" / "009" / "S010_009_00000001.png", face())


def test_ckplus_full_layout(tmp_path):
    build_ckplus(tmp_path / "ckplus")
    frames = load_dataset("ckplus", tmp_path)
    assert len(frames) == 12 and frames.meta["sequence"].nunique() == 3
    assert frames.classes == ("angry", "disgust", "surprise")
    clips = make_clips(frames, length=3, window="last")
    assert clips.images.shape == (3, 3, 48, 48)
    s010 = clips.subset(clips.meta["sequence"] == "S010_002")
    assert s010.meta["frame"].iat[0] == 2  # last three of five frames
    windows = make_clips(frames, length=3, window="sliding")
    assert len(windows) == 2 + 3 + 1
    uniform = make_clips(frames, length=2, window="uniform")
    assert uniform.images.shape == (3, 2, 48, 48)


def test_ckplus_bad_label_file_and_short_sequences(tmp_path):
    build_ckplus(tmp_path)
    bad = tmp_path / "Emotion" / "S005" / "001" / "S005_001_00000004_emotion.txt"
    bad.write_text("happy")
    with pytest.raises(DatasetError, match=r"S005_001_00000004_emotion\.txt: expected one number"):
        load_dataset("ckplus", tmp_path)
    with pytest.warns(UserWarning):
        frames = load_dataset("ckplus", tmp_path, errors="skip")
    assert frames.skipped == {"bad_label_file": 1}
    with pytest.raises(DatasetError, match="sequence S010_004 has 3 frames, fewer than 4"):
        make_clips(frames, length=4)


def test_ckplus48_layout_and_bad_names(tmp_path):
    for cls, seq in (("anger", "S010_004"), ("happy", "S011_002"), ("happy", "S012_001")):
        for f in (7, 8, 9):
            write_image(tmp_path / "ckplus48" / cls / f"{seq}_{f:08d}.png", face())
    clips = make_clips(load_dataset("ckplus48", tmp_path), 3)
    assert clips.images.shape == (3, 3, 48, 48) and list(clips.meta["subject"]) == ["S010", "S011", "S012"]
    write_image(tmp_path / "ckplus48" / "happy" / "photo.png", face())
    with pytest.raises(DatasetError, match=r"photo\.png: expected a name like S010_004_00000017\.png"):
        load_dataset("ckplus48", tmp_path)


def test_oulu_casia_vis_layout(tmp_path):
    base = tmp_path / "oulu_casia" / "OriginalImg" / "VL" / "Strong"
    for subject in ("P001", "P002"):
        for emotion in ("Anger", "Happiness", "Surprise"):
            for f in range(4):
                write_image(base / subject / emotion / f"{f:03d}.jpeg", face(30 * f))
    write_image(tmp_path / "oulu_casia" / "OriginalImg" / "NI" / "Strong" / "P003" / "Anger" / "000.jpeg", face())
    frames = load_dataset("oulu_casia", tmp_path)
    assert len(frames) == 24 and set(frames.subjects) == {"P001", "P002"}  # NIR folder ignored
    assert frames.classes == ("angry", "happy", "surprise")
    assert make_clips(frames, 4).images.shape == (6, 4, 48, 48)
    with pytest.raises(MissingDatasetError, match="Oulu-CASIA"):
        load_dataset("oulu_casia", tmp_path, illumination="Dark")


def test_mug_layout_and_empty_take(tmp_path):
    base = tmp_path / "mug" / "subjects3"
    for subject in ("001", "002"):
        for emotion in ("happiness", "sadness"):
            for take in ("take000", "take001"):
                for f in range(3):
                    write_image(base / subject / emotion / take / f"img_{f:04d}.jpg", face())
    (base / "002" / "sadness" / "take002").mkdir()
    with pytest.raises(DatasetError, match=r"take002: sequence folder has no image frames"):
        load_dataset("mug", tmp_path)
    with pytest.warns(UserWarning):
        frames = load_dataset("mug", tmp_path, errors="skip")
    assert frames.meta["sequence"].nunique() == 8 and frames.skipped == {"missing_frames": 1}
    assert "001/happiness/take000" in set(frames.meta["sequence"])


def test_missing_dataset_errors_name_expected_path(tmp_path, monkeypatch):
    monkeypatch.delenv("FER_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="FER_DATA_DIR"):
        load_dataset("ckplus48")
    for name in ("ckplus", "ckplus48", "mug", "fer2013_folders"):
        with pytest.raises(MissingDatasetError, match=str(tmp_path)):
            load_dataset(name, tmp_path)
    with pytest.raises(KeyError, match="unknown dataset"):
        load_dataset("affectnet", tmp_path)
