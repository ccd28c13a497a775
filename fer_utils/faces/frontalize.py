"""Face frontalization: re-render a face as seen from the front, from its dense 3D landmarks.

Method (after Hassner et al., "Effective face frontalization in unconstrained images", CVPR 2015,
with a mesh per face instead of one generic 3D model): the face's 468 MediaPipe landmarks and the
frontal :class:`~fer_utils.faces.reference_face.ReferenceFace` share one triangulation (Delaunay,
of the reference's frontal view); every
pixel of the frontal crop lies in one reference triangle, and its barycentric coordinates there
give the point of the photo to sample (a piecewise-affine warp, one ``cv2.remap``). Where the head
is turned, the far side of the face is seen at a grazing angle or not at all: there the mirrored
point of the near side is sampled instead ("soft symmetry"), only where a point is seen at more
than about 50 degrees and its mirror image is seen better, so the asymmetry of an expression on
a frontal face is kept. Outside the mesh (hair, ears, background) the crop is an in-plane
similarity warp of the photo, blended at the mesh border.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay
from tqdm.auto import tqdm

from fer_utils.data import FaceData
from fer_utils.faces.face_mesh import FaceMeshLandmarker
from fer_utils.faces.reference_face import HeadPose, ReferenceFace, similarity_transform

#: Metadata columns :func:`frontalize_dataset` adds: the pose of each original face (NaN: no mesh).
POSE_COLUMNS = ("yaw", "pitch", "roll")


@dataclass(frozen=True)
class _CropGeometry:
    """Where each pixel of a frontal crop falls on the reference (fixed per crop size)."""

    reference_xy: np.ndarray  # (P, 2) reference coordinates of the pixel centres
    triangle: np.ndarray  # (P,) reference triangle holding each pixel, -1 outside the mesh
    barycentric: np.ndarray  # (P, 3) weights of that triangle's vertices
    inside: np.ndarray  # (size, size) float32 mesh mask, feathered at its border


@dataclass(frozen=True)
class FrontalFace:
    """One frontalized crop, the pose it was turned from, and how much was mirrored."""

    image: np.ndarray  # (size, size) uint8
    pose: HeadPose
    mirrored: float  # fraction of the mesh area filled from the mirrored side


class Frontalizer:
    """Frontal ``size`` x ``size`` greyscale crops of faces with known 3D landmarks.

    ``symmetry=False`` turns the mirrored fill off (occluded parts then show whatever the photo
    has there). ``grazing`` is the cosine below which a point counts as seen at a grazing angle.
    """

    def __init__(self, reference: ReferenceFace | None = None, size: int = 48, *,
                 symmetry: bool = True, grazing: float = 0.65) -> None:
        self.reference = reference or ReferenceFace.load()
        self.size, self.symmetry, self.grazing = size, symmetry, grazing
        self._mesh = Delaunay(self.reference.vertices[:, :2])
        self.triangles = self._mesh.simplices
        self._geometry = self._crop_geometry()
        # Orientation of each triangle as drawn frontally (a photo's areas are compared to it).
        self._facing = np.sign(_signed_areas(self.reference.vertices[:, :2], self.triangles))

    def _crop_geometry(self) -> _CropGeometry:
        ref = self.reference
        rows, cols = np.mgrid[0:self.size, 0:self.size]
        centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
        reference_xy = (centres / self.size - ref.crop_offset) / ref.crop_scale
        triangle = self._mesh.find_simplex(reference_xy)
        affine = self._mesh.transform[triangle.clip(0)]
        first_two = np.einsum("pij,pj->pi", affine[:, :2], reference_xy - affine[:, 2])
        barycentric = np.column_stack([first_two, 1 - first_two.sum(1)])
        inside = (triangle >= 0).reshape(self.size, self.size).astype(np.float32)
        feather = max(0.5, self.size / 96)
        inside = np.minimum(inside, cv2.GaussianBlur(inside, (0, 0), feather) * 2)
        return _CropGeometry(reference_xy, triangle, barycentric, inside)

    def frontalize(self, image: np.ndarray, mesh: np.ndarray) -> FrontalFace:
        """Frontal crop of the face whose ``(468, 3)`` landmarks in ``image`` pixels are ``mesh``."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        pose = self.reference.head_pose(mesh)
        mesh = mesh.astype(np.float64)
        # Shrink large photos first, so sampling at the crop's resolution does not alias.
        shrink = 2.0 * self.size * self.reference.crop_scale / pose.scale
        if shrink < 1:
            grey = cv2.resize(grey, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            mesh = mesh * shrink
        geometry, ref = self._geometry, self.reference
        # Background: one in-plane similarity from the reference's frontal projection to the photo.
        scale, rotation, shift = similarity_transform(ref.vertices[:, :2], mesh[:, :2])
        outside_xy = scale * geometry.reference_xy @ rotation.T + shift
        inside_px = geometry.triangle >= 0
        corners = self.triangles[geometry.triangle[inside_px]]
        weights = geometry.barycentric[inside_px]
        direct_xy = outside_xy.copy()
        direct_xy[inside_px] = np.einsum("pk,pkd->pd", weights, mesh[corners, :2])
        crop = self._sample(grey, direct_xy)
        mirrored = 0.0
        if self.symmetry:
            seen = self._visibility(mesh)
            mirror_weight = np.zeros(len(direct_xy))
            gain = (weights * seen[ref.mirror[corners]]).sum(1) - (weights * seen[corners]).sum(1)
            grazing = (weights * seen[corners]).sum(1) < self.grazing
            mirror_weight[inside_px] = np.clip(gain / 0.3, 0, 1) * grazing
            if mirror_weight.any():
                mirror_xy = direct_xy.copy()
                mirror_xy[inside_px] = np.einsum("pk,pkd->pd", weights, mesh[ref.mirror[corners], :2])
                weight = mirror_weight.reshape(crop.shape)
                crop = crop * (1 - weight) + self._sample(grey, mirror_xy) * weight
                mirrored = float(mirror_weight.sum() / inside_px.sum())
        background = self._sample(grey, outside_xy)
        blended = background + (crop - background) * geometry.inside
        return FrontalFace(np.clip(blended.round(), 0, 255).astype(np.uint8), pose, mirrored)

    def _sample(self, grey: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Bilinear samples of ``grey`` at continuous coordinates ``xy`` (one per crop pixel)."""
        maps = (xy - 0.5).astype(np.float32).reshape(self.size, self.size, 2)
        return cv2.remap(grey, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)

    def _visibility(self, mesh: np.ndarray) -> np.ndarray:
        """Per vertex: cosine between the surface normal and the view axis (0 when facing away)."""
        triangles = self.triangles
        projected = _signed_areas(mesh[:, :2], triangles) * self._facing
        a, b, c = (mesh[triangles[:, k]] for k in range(3))
        full = np.linalg.norm(np.cross(b - a, c - a), axis=1) / 2
        cosine = np.clip(projected / np.maximum(full, 1e-9), 0, 1)
        total, count = np.zeros(len(mesh)), np.zeros(len(mesh))
        for k in range(3):
            np.add.at(total, triangles[:, k], cosine)
            np.add.at(count, triangles[:, k], 1)
        return total / np.maximum(count, 1)


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (points[triangles[:, k]] for k in range(3))
    return ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]) / 2


def frontalize_images(images: np.ndarray, frontalizer: Frontalizer,
                      landmarker: Callable[[np.ndarray], np.ndarray | None],
                      progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Frontalize a stack of faces; faces without a mesh are kept as they are, and counted.

    Returns the ``(N, size, size)`` crops, an ``(N, 3)`` array of yaw, pitch, roll in degrees
    (NaN where no mesh was found) and the number of faces without a mesh.
    """
    out = np.empty((len(images), frontalizer.size, frontalizer.size), dtype=np.uint8)
    poses = np.full((len(images), 3), np.nan)
    missed = 0
    for i, image in enumerate(tqdm(images, desc="frontalize", disable=not progress, leave=False)):
        mesh = landmarker(image)
        if mesh is None:
            missed += 1
            out[i] = image if image.shape[:2] == out.shape[1:] else cv2.resize(
                image, out.shape[1:], interpolation=cv2.INTER_AREA)
            continue
        face = frontalizer.frontalize(image, mesh)
        out[i], poses[i] = face.image, (face.pose.yaw, face.pose.pitch, face.pose.roll)
    return out, poses, missed


def frontalize_dataset(data: FaceData, frontalizer: Frontalizer | None = None,
                       progress: bool = True) -> FaceData:
    """``data`` with every still frontalized at its own size; the original pose goes into
    ``meta`` (:data:`POSE_COLUMNS`, NaN where Face Mesh found no face and the image is kept)."""
    if data.is_clip:
        raise ValueError(f"{data.name}: frontalize_dataset takes stills; got clips {data.images.shape}")
    frontalizer = frontalizer or Frontalizer(size=data.image_size[0])
    with FaceMeshLandmarker() as landmarker:
        images, poses, missed = frontalize_images(data.images, frontalizer, landmarker, progress)
    meta = data.meta.assign(**{name: poses[:, k] for k, name in enumerate(POSE_COLUMNS)})
    if progress:
        print(f"{data.name}: frontalized {len(data) - missed} of {len(data)} faces "
              f"({missed} without a Face Mesh kept as they are)")
    return FaceData(images, data.labels, data.classes, meta, f"{data.name}-frontal", dict(data.skipped))
