"""Face detection (MTCNN, Haar, LBP), alignment to square greyscale crops, batch preparation."""
from fer_utils.data.images import IMAGE_EXTENSIONS, ImageReadError, read_image, to_grey, to_rgb8
from fer_utils.faces.align import align_face, face_transform
from fer_utils.faces.detectors import (
    CascadeDetector, Detection, FaceDetector, MTCNNDetector, create_detector, list_detectors,
)
from fer_utils.faces.draw import draw_faces
from fer_utils.faces.prepare import find_images, folder_labels, prepare_faces
from fer_utils.faces.synthetic import paste_faces, textured_background

__all__ = [
    "IMAGE_EXTENSIONS", "CascadeDetector", "Detection", "FaceDetector", "ImageReadError",
    "MTCNNDetector", "align_face", "create_detector", "draw_faces", "face_transform", "find_images",
    "folder_labels", "list_detectors", "paste_faces", "prepare_faces", "read_image",
    "textured_background", "to_grey", "to_rgb8",
]
