"""A frontal, left-right symmetric 3D reference face and the head pose of a mesh against it.

MediaPipe's own canonical face model is not in its wheel, so the reference is built from data:
generalised Procrustes analysis of many Face Mesh meshes (their mean pose is near frontal),
then the mean is made exactly symmetric about its mid-sagittal plane, which fixes yaw and roll;
pitch is the data's mean pitch. The shipped ``reference_face.npz`` was built with
:func:`build_reference_face` from 549 meshes of 600 random FER2013 Training faces (seed 0), see
``python -m fer_utils.faces.reference_face --help``; only the mean shape and the crop placement are
stored, no image.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

#: The reference shipped with the package (built from FER2013 Training meshes).
DEFAULT_REFERENCE = Path(__file__).with_name("reference_face.npz")


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``(scale, rotation, translation)`` with ``target ~ scale * rotation @ source + t``.

    Umeyama (1991) for ``(N, d)`` point sets; the rotation is proper (det +1). Hand-written
    because OpenCV's estimators are 2D only or include shear, and this is ten lines of SVD.
    """
    mu_s, mu_t = source.mean(0), target.mean(0)
    src, tgt = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(tgt.T @ src / len(source))
    sign = np.ones(len(sigma))
    sign[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / (src**2).sum(1).mean())
    return scale, rotation, mu_t - scale * rotation @ mu_s


@dataclass(frozen=True)
class HeadPose:
    """Rotation of a face relative to the reference, in degrees (image axes: x right, y down).

    ``yaw`` turns about the vertical axis, ``pitch`` nods, ``roll`` tilts in the image plane;
    a mirrored image has the opposite yaw and roll.
    """

    yaw: float
    pitch: float
    roll: float
    scale: float  # mesh units (pixels) per reference unit


@dataclass(frozen=True, eq=False)
class ReferenceFace:
    """Frontal mean face mesh and how it sits in a crop.

    Attributes:
        vertices: ``(V, 3)`` centred, unit RMS radius, symmetric about ``x = 0``.
        mirror: ``(V,)`` index of each vertex's mirror image (an involution).
        crop_offset, crop_scale: the frontal crop of side ``s`` puts reference point ``(x, y)``
            at pixel ``s * (crop_offset + crop_scale * (x, y))``, as faces sat in the crops the
            reference was built from.
    """

    vertices: np.ndarray
    mirror: np.ndarray
    crop_offset: np.ndarray
    crop_scale: float

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, vertices=self.vertices.astype(np.float32), mirror=self.mirror,
                            crop_offset=self.crop_offset,
                            crop_scale=self.crop_scale)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_REFERENCE) -> "ReferenceFace":
        with np.load(path) as stored:
            return cls(vertices=stored["vertices"].astype(np.float64), mirror=stored["mirror"],
                       crop_offset=stored["crop_offset"],
                       crop_scale=float(stored["crop_scale"]))

    def head_pose(self, mesh: np.ndarray) -> HeadPose:
        """Yaw, pitch and roll of ``mesh`` (``(V, 3)`` in image units) against this reference."""
        scale, rotation, _ = similarity_transform(self.vertices, mesh)
        roll, yaw, pitch = Rotation.from_matrix(rotation).as_euler("ZYX", degrees=True)
        return HeadPose(yaw=float(yaw), pitch=float(pitch), roll=float(roll), scale=scale)


def _normalise(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    return centred / np.sqrt((centred**2).sum(1).mean())


def _aligned(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    scale, rotation, shift = similarity_transform(source, target)
    return scale * source @ rotation.T + shift


def mirror_map(vertices: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Index of each vertex's mirror image on a near-frontal face (``ValueError`` if not an involution).

    Reflect ``x``, match points one to one (Hungarian), align the reflection rigidly to the face
    with that matching, and match again until the matching stops changing.
    """
    reflected = vertices * np.array([-1.0, 1.0, 1.0])
    moved = reflected - reflected.mean(0) + vertices.mean(0)
    mirror = np.arange(len(vertices))
    for _ in range(iterations):
        cost = ((vertices[:, None, :] - moved[None, :, :]) ** 2).sum(-1)
        _, matched = linear_sum_assignment(cost)
        if np.array_equal(matched, mirror):
            break
        mirror = matched
        scale, rotation, shift = similarity_transform(reflected[mirror], vertices)
        moved = scale * reflected @ rotation.T + shift
    if not np.array_equal(mirror[mirror], np.arange(len(vertices))):
        raise ValueError("no consistent left-right matching: are the meshes of near-frontal faces?")
    return mirror


def _symmetrise(vertices: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Rotate the mid-sagittal plane onto ``x = 0`` and average each vertex with its mirror."""
    offsets = vertices - vertices[mirror]
    normal = np.linalg.eigh(offsets.T @ offsets)[1][:, -1]
    normal *= np.sign(normal[0]) or 1.0
    axis = np.cross(normal, [1.0, 0.0, 0.0])
    angle = np.arctan2(np.linalg.norm(axis), normal[0])
    rotation = Rotation.from_rotvec(axis / (np.linalg.norm(axis) or 1.0) * angle).as_matrix()
    turned = vertices @ rotation.T
    turned[:, 0] -= turned[:, 0].mean()
    return _normalise((turned + turned[mirror] * np.array([-1.0, 1.0, 1.0])) / 2)


def build_reference_face(meshes: np.ndarray, crop_size: int, iterations: int = 5) -> ReferenceFace:
    """Mean frontal face of ``(M, V, 3)`` meshes measured on ``crop_size``-pixel face crops."""
    meshes = np.asarray(meshes, dtype=np.float64)
    if meshes.ndim != 3 or meshes.shape[2] != 3 or len(meshes) < 2:
        raise ValueError(f"expected (M >= 2, V, 3) meshes, got {meshes.shape}")
    shapes = np.stack([_normalise(m) for m in meshes])
    mean = _normalise(shapes.mean(0))
    for _ in range(iterations):
        mean = _normalise(np.mean([_aligned(s, mean) for s in shapes], axis=0))
    mirror = mirror_map(mean)
    vertices = _symmetrise(mean, mirror)
    # Where the frontal face sits in a crop: median 2D similarity of the reference onto each mesh.
    fits = [similarity_transform(vertices[:, :2], m[:, :2]) for m in meshes]
    crop_scale = float(np.median([scale for scale, _, _ in fits])) / crop_size
    crop_offset = np.median([shift for _, _, shift in fits], axis=0) / crop_size
    return ReferenceFace(vertices=vertices, mirror=mirror, crop_offset=crop_offset, crop_scale=crop_scale)


def main(argv: list[str] | None = None) -> None:
    """Rebuild the shipped reference from FER2013 Training faces (needs mediapipe and the data)."""
    from fer_utils.data import load_dataset
    from fer_utils.faces.face_mesh import FaceMeshLandmarker

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--faces", type=int, default=600, help="random Training faces to measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_REFERENCE)
    args = parser.parse_args(argv)
    train = load_dataset("fer2013").split("Training")
    picked = np.random.default_rng(args.seed).choice(len(train), args.faces, replace=False)
    with FaceMeshLandmarker() as landmarker:
        meshes = [m for m in (landmarker(train.images[i]) for i in picked) if m is not None]
    build_reference_face(np.stack(meshes), crop_size=train.image_size[0]).save(args.out)
    print(f"{args.out}: reference from {len(meshes)} meshes of {args.faces} faces")


if __name__ == "__main__":
    main()
