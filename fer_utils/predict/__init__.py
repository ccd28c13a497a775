"""Emotions of faces in new photos and videos: predictor, video tracking/smoothing, outputs, command.

Uses faces, models and plots only; never training code.
"""
