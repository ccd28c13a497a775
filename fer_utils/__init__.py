"""fer_utils: facial expression recognition data, faces, models, training and analysis."""
__version__ = "0.1.0"
