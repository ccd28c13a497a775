"""Figures for training, evaluation and model inspection.

Every function draws on a new Agg-rendered ``Figure`` (no pyplot state, no windows), saves it
as PNG when given a ``path`` and returns it (notebooks display it).
"""
from fer_utils.plots._figure import finish, new_figure, set_theme
from fer_utils.plots.images import (
    overlay_heatmap, plot_activations, plot_face_rows, plot_gradcam, plot_kernels, plot_prediction_grid,
)
from fer_utils.plots.metrics import (
    plot_comparison, plot_confusion_matrix, plot_per_class, plot_reliability, plot_tradeoff,
)
from fer_utils.plots.timeline import plot_timeline
from fer_utils.plots.training import plot_histories, plot_history, plot_lr_find

__all__ = [
    "finish", "new_figure", "set_theme",
    "overlay_heatmap", "plot_activations", "plot_comparison", "plot_confusion_matrix", "plot_face_rows",
    "plot_gradcam",
    "plot_histories", "plot_history", "plot_kernels", "plot_lr_find", "plot_per_class", "plot_prediction_grid",
    "plot_reliability", "plot_timeline", "plot_tradeoff",
]
