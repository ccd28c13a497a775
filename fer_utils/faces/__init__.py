"""Face detection (YuNet, MTCNN, BlazeFace, Haar, LBP), alignment to square greyscale crops, frontalization from
3D landmarks, batch preparation."""
from fer_utils.data.images import IMAGE_EXTENSIONS, read_image, to_grey, to_rgb8
from fer_utils.errors import ImageReadError
from fer_utils.faces.align import align_face, face_transform
from fer_utils.faces.detection import Detection, FaceDetector
from fer_utils.faces.detectors import (
    BlazeFaceDetector, CascadeDetector, MTCNNDetector, create_detector, list_detectors,
)
from fer_utils.faces.draw import draw_faces
from fer_utils.faces.face_mesh import FaceMeshLandmarker
from fer_utils.faces.frontalize import (
    POSE_COLUMNS, FrontalFace, Frontalizer, frontalize_dataset, frontalize_images,
)
from fer_utils.faces.prepare import find_images, folder_labels, prepare_faces
from fer_utils.faces.reference_face import (
    HeadPose, ReferenceFace, build_reference_face, mirror_map, similarity_transform,
)
from fer_utils.faces.synthetic import moving_faces, paste_faces, textured_background

__all__ = [
    "IMAGE_EXTENSIONS", "POSE_COLUMNS", "BlazeFaceDetector", "CascadeDetector", "Detection", "FaceDetector",
    "FaceMeshLandmarker", "FrontalFace", "Frontalizer", "HeadPose", "ImageReadError", "MTCNNDetector",
    "ReferenceFace", "align_face", "build_reference_face", "create_detector", "draw_faces",
    "face_transform", "find_images", "folder_labels", "frontalize_dataset", "frontalize_images",
    "list_detectors", "mirror_map", "moving_faces", "paste_faces", "prepare_faces", "read_image",
    "similarity_transform",
    "textured_background", "to_grey", "to_rgb8",
]
