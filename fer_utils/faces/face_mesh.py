"""Dense 3D facial landmarks: MediaPipe Face Mesh (468 points), offline.

The landmark model (``face_landmark.tflite``, Apache-2.0) ships inside the ``mediapipe==0.10.21``
wheel, so nothing is downloaded at run time; later mediapipe releases dropped the bundled model,
hence the pin (installed with ``--no-deps`` by the Makefile: its metadata asks for numpy<2, but
the Face Mesh solution runs on numpy 2). MediaPipe is imported only when a landmarker is built,
so the rest of the package works without it.
"""
from __future__ import annotations

import cv2
import numpy as np

from fer_utils.faces.native_log import native_stderr_silenced
from fer_utils.faces.detection import check_image


class FaceMeshLandmarker:
    """468 (x, y, z) landmarks of the most prominent face of a uint8 RGB or grey image.

    ``x``, ``y`` are continuous image coordinates (pixel ``i`` covers ``[i, i + 1)``), ``z`` is
    depth in the same units, growing away from the camera (MediaPipe's convention). Small crops
    (FER2013's 48x48 faces fill the frame) are padded by ``pad`` of their side with edge pixels
    and upscaled to at least ``min_side`` pixels first, which the detector inside Face Mesh needs.
    """

    def __init__(self, min_confidence: float = 0.3, pad: float = 0.25, min_side: int = 192) -> None:
        try:
            from mediapipe.python.solutions.face_mesh import FaceMesh
        except ImportError as error:
            raise ImportError(
                "face landmarks need mediapipe 0.10.21 (it ships the Face Mesh model): "
                "pip install --no-deps mediapipe==0.10.21 protobuf==4.25.8 absl-py flatbuffers "
                "(make setup does this)"
            ) from error
        self.pad, self.min_side = pad, min_side
        with native_stderr_silenced():  # the graph opens its models in its own threads and logs as it does:
            self._mesh = FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                  min_detection_confidence=min_confidence)
            self._mesh.process(np.zeros((min_side, min_side, 3), np.uint8))  # returns once they are open

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """``(468, 3)`` float64 landmarks, or ``None`` when no face is found."""
        rgb = check_image(image)
        height, width = rgb.shape[:2]
        pad = round(self.pad * max(height, width))
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        scale = max(1.0, self.min_side / min(padded.shape[:2]))
        if scale > 1:
            padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        with native_stderr_silenced():  # glog's W0000 lines of a graph's first faces
            found = self._mesh.process(padded).multi_face_landmarks
        if not found:
            return None
        points = np.array([(p.x, p.y, p.z) for p in found[0].landmark], dtype=np.float64)
        side_x = padded.shape[1] / scale
        points[:, 0] = points[:, 0] * side_x - pad
        points[:, 1] = points[:, 1] * padded.shape[0] / scale - pad
        points[:, 2] *= side_x  # MediaPipe scales z like x
        return points

    def close(self) -> None:
        """Free the MediaPipe graph."""
        self._mesh.close()

    def __enter__(self) -> "FaceMeshLandmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
