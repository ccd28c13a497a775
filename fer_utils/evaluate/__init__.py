"""Evaluation: probabilities (with TTA), metrics, calibration, ensembles and temporal voting."""
from fer_utils.evaluate.calibration import expected_calibration_error, reliability_data
from fer_utils.evaluate.ensemble import average_probs, ensemble_proba
from fer_utils.evaluate.inference import predict_proba
from fer_utils.evaluate.metrics import (
    classification_metrics, confusion_counts, most_confused, paired_comparison, summary_row,
    top_k_accuracy,
)
from fer_utils.evaluate.tta import TTA_MODES, tta_views
from fer_utils.evaluate.voting import majority_vote, sum_vote, window_vote

__all__ = [
    "TTA_MODES", "average_probs", "classification_metrics", "confusion_counts", "ensemble_proba",
    "expected_calibration_error", "majority_vote", "most_confused", "paired_comparison", "predict_proba", "reliability_data", "sum_vote",
    "summary_row", "top_k_accuracy", "tta_views", "window_vote",
]
