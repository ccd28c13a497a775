"""Frontalization: the reference face, head pose, the piecewise-affine warp, and real FER2013 faces."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fer_utils.faces import (
    FaceMeshLandmarker, Frontalizer, ReferenceFace, build_reference_face, frontalize_images,
    similarity_transform,
)


@pytest.fixture(scope="module")
def reference() -> ReferenceFace:
    return ReferenceFace.load()


def _place(reference: ReferenceFace, size: int, yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    """The reference mesh turned by ``yaw``/``pitch`` and put where a frontal crop of ``size`` has it."""
    turned = reference.vertices @ Rotation.from_euler("ZYX", [0, yaw, pitch], degrees=True).as_matrix().T
    return turned * size * reference.crop_scale + np.append(reference.crop_offset * size, 0)


def test_similarity_transform_recovers_a_known_map():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))
    rotation = Rotation.from_euler("ZYX", [10, -35, 20], degrees=True).as_matrix()
    moved = 2.5 * points @ rotation.T + [3, -1, 7]
    scale, found, shift = similarity_transform(points, moved)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(found, rotation, atol=1e-9)
    np.testing.assert_allclose(shift, [3, -1, 7], atol=1e-9)


def test_shipped_reference_is_symmetric_with_known_midline(reference):
    v, mirror = reference.vertices, reference.mirror
    assert v.shape == (468, 3)
    np.testing.assert_array_equal(mirror[mirror], np.arange(468))
    np.testing.assert_allclose(v[mirror] * [-1, 1, 1], v, atol=1e-6)
    # MediaPipe indices: 1 nose tip and 152 chin lie on the midline; 33/263 are the outer eye corners.
    assert mirror[1] == 1 and mirror[152] == 152 and mirror[33] == 263
    assert v[1, 2] < v[:, 2].mean()  # the nose is nearer the camera (smaller z) than the face


def test_reference_rebuilt_from_turned_noisy_meshes(reference):
    rng = np.random.default_rng(1)
    meshes = [_place(reference, 48, yaw, pitch) + rng.normal(scale=0.05, size=(468, 3))
              for yaw, pitch in rng.uniform(-20, 20, size=(12, 2))]
    rebuilt = build_reference_face(np.stack(meshes), crop_size=48)
    np.testing.assert_array_equal(rebuilt.mirror, reference.mirror)
    assert np.abs(rebuilt.vertices[rebuilt.mirror] * [-1, 1, 1] - rebuilt.vertices).max() < 1e-9
    assert rebuilt.crop_scale == pytest.approx(reference.crop_scale, rel=0.05)


def test_head_pose_signs_and_mirror(reference):
    pose = reference.head_pose(_place(reference, 48, yaw=30, pitch=-10))
    assert pose.yaw == pytest.approx(30, abs=0.01) and pose.pitch == pytest.approx(-10, abs=0.01)
    mesh = _place(reference, 48, yaw=30)
    nose_x, centre_x = mesh[1, 0], mesh[:, 0].mean()
    assert nose_x < centre_x  # positive yaw: the nose points to the image's left
    flipped = mesh[reference.mirror] * [-1, 1, 1] + [48, 0, 0]
    assert reference.head_pose(flipped).yaw == pytest.approx(-30, abs=0.01)


def test_frontal_face_comes_back_unchanged(reference):
    """A face already frontal and placed as the crop expects is an identity warp, nothing mirrored."""
    size = 48
    rows, cols = np.mgrid[0:size, 0:size]
    image = (128 + 60 * np.sin(cols / 5.0) + 40 * np.cos(rows / 7.0)).astype(np.uint8)
    face = Frontalizer(reference, size).frontalize(image, _place(reference, size))
    assert face.mirrored < 1e-9 and abs(face.pose.yaw) < 1e-6
    assert np.abs(face.image.astype(int) - image).max() <= 1


def test_turned_face_is_filled_from_its_visible_side(reference):
    image = np.full((48, 48), 100, np.uint8)
    image[:, 24:] = 200  # the image's right half is bright
    mesh = _place(reference, 48, yaw=40)  # nose to the left: the face's image-left half turns away
    face = Frontalizer(reference, 48).frontalize(image, mesh)
    assert 0.25 < face.mirrored < 0.6
    plain = Frontalizer(reference, 48, symmetry=False).frontalize(image, mesh)
    assert plain.mirrored == 0.0
    # The hidden half (image left of the crop) is sampled from the visible, bright side instead.
    hidden = (slice(14, 34), slice(12, 20))
    assert face.image[hidden].mean() > plain.image[hidden].mean() + 40


def test_faces_without_mesh_are_kept_and_counted(reference):
    blank = np.zeros((3, 48, 48), np.uint8)
    out, poses, missed = frontalize_images(blank, Frontalizer(reference), lambda image: None,
                                           progress=False)
    assert missed == 3 and np.isnan(poses).all()
    np.testing.assert_array_equal(out, blank)


@pytest.mark.realdata
def test_real_faces_are_turned_to_the_front(fer2013, reference):
    faces = fer2013.split("PublicTest").images[:80]
    frontalizer = Frontalizer(reference)
    with FaceMeshLandmarker() as landmarker:
        out, poses, missed = frontalize_images(faces, frontalizer, landmarker, progress=False)
        assert missed <= 12  # Face Mesh finds most FER2013 faces (about 89% on PublicTest)
        turned = np.flatnonzero(np.abs(poses[:, 0]) > 20)
        assert len(turned) >= 5
        after = [frontalizer.reference.head_pose(m).yaw
                 for m in (landmarker(out[i]) for i in turned) if m is not None]
        assert len(after) >= len(turned) - 1
        assert np.median(np.abs(after)) < 0.3 * np.median(np.abs(poses[turned, 0]))
        # A mirrored photo has the opposite yaw.
        found = np.flatnonzero(~np.isnan(poses[:, 0]))[:20]
        pairs = [(reference.head_pose(mesh).yaw, poses[i, 0]) for i in found
                 if (mesh := landmarker(np.ascontiguousarray(faces[i][:, ::-1]))) is not None]
        assert len(pairs) >= 15
        assert np.median(np.abs(np.sum(pairs, axis=1))) < 4


def test_face_mesh_keeps_the_native_log_lines_out_of_stderr(capfd):
    """MediaPipe's C++ loggers print XNNPACK and glog ``W0000`` lines on a graph's first run; they would fill
    every notebook that frontalizes. A real photo still gets its 468 landmarks."""
    import cv2
    import matplotlib.cbook

    photo = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    with FaceMeshLandmarker() as landmarker:
        points = landmarker(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))
    assert points is not None and points.shape == (468, 3)
    err = capfd.readouterr().err
    assert "W0000" not in err and "XNNPACK" not in err, err
