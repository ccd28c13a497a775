"""Emotions of faces in new photos and videos: predictor, video tracking/smoothing, outputs, command.

Uses data, faces, models and plots only; never training code (tested in test_architecture).
"""
from fer_utils.predict.predictor import FacePredictor, FaceResult, default_checkpoint
from fer_utils.predict.video import FrameResult, analyse_video

__all__ = ["FacePredictor", "FaceResult", "FrameResult", "analyse_video", "default_checkpoint"]
