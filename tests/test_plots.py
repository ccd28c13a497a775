"""Every figure writes a PNG and returns a Figure showing what it should; Grad-CAM and activation hooks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from fer_utils import plots
from fer_utils.evaluate import classification_metrics
from fer_utils.models import create_model
from fer_utils.train.lr_finder import LRFindResult
from fer_utils.evaluate.visualize import activation_maps, conv_layer_names, first_layer_kernels, grad_cam

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(fig, path) -> None:
    assert isinstance(fig, Figure)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000


def texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def image_count(fig: Figure) -> int:
    return sum(len(ax.get_images()) for ax in fig.axes)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("simple_cnn").eval()


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 48, 48), dtype=np.uint8), rng.integers(0, 7, 6)


@pytest.fixture(scope="module")
def metrics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 300)
    probs = rng.dirichlet(np.ones(7), 300) * 0.5 + np.eye(7)[y] * 0.5
    return classification_metrics(y, probs, CLASSES)


def test_history_plot(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.9, 1.5, 1.2], "train_acc": [0.3, 0.45, 0.55],
                            "val_loss": [1.7, 1.5, 1.6], "val_acc": [0.35, 0.48, 0.47], "lr": [0.01, 0.005, 0.001],
                            "seconds": [1, 1, 1]})
    fig = plots.plot_history(history, tmp_path / "h.png", title="run")
    assert_png(fig, tmp_path / "h.png")
    loss, acc, lr = fig.axes
    assert fig._suptitle.get_text() == "run" and texts(loss.get_legend().get_texts()) == ["train", "validation"]
    train, val, best = loss.get_lines()
    assert list(train.get_ydata()) == [1.9, 1.5, 1.2] and list(val.get_ydata()) == [1.7, 1.5, 1.6]
    assert list(best.get_xdata()) == [2, 2]  # best validation accuracy: epoch 2
    assert acc.get_title() == "Accuracy (best validation 0.480, epoch 2)" and acc.get_ylabel() == "accuracy"
    assert lr.get_yscale() == "log" and list(lr.get_lines()[0].get_ydata()) == [0.01, 0.005, 0.001]
    history.drop(columns=["val_loss", "val_acc"]).to_csv(tmp_path / "history.csv", index=False)
    fig = plots.plot_history(tmp_path / "history.csv", tmp_path / "h2.png")
    assert_png(fig, tmp_path / "h2.png")
    assert fig._suptitle.get_text() == "Training history" and len(fig.axes[0].get_lines()) == 1  # train only


def test_histories_share_one_panel_per_column_and_one_legend(tmp_path):
    one = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.9, 1.5], "train_acc": [0.3, 0.45], "val_acc": [0.35, 0.5],
                        "lr": [0.05, 0.01]})
    one.assign(val_acc=[0.2, 0.25]).to_csv(tmp_path / "other.csv", index=False)
    fig = plots.plot_histories({"resnet18": one, "densenet121": tmp_path / "other.csv"}, ("lr", "val_acc"),
                               tmp_path / "hs.png", title="two runs")
    assert_png(fig, tmp_path / "hs.png")
    lr, val = fig.axes
    assert lr.get_yscale() == "log" and val.get_title() == "hold-out accuracy"
    assert [list(line.get_ydata()) for line in val.get_lines()] == [[0.35, 0.5], [0.2, 0.25]]
    assert texts(fig.legends[0].get_texts()) == ["resnet18", "densenet121"]
    with pytest.raises(ValueError, match="unknown history column"):
        plots.plot_histories({"a": one}, ("accuracy",))


def test_lr_find_plot(tmp_path):
    lrs = np.geomspace(1e-6, 1, 50)
    losses = 2 - np.tanh(np.log10(lrs) + 3) + np.where(lrs > 0.1, 20 * lrs, 0)
    result = LRFindResult(lrs.tolist(), losses.tolist(), losses.tolist(), 1e-3, 1e-2)
    fig = plots.plot_lr_find(result, tmp_path / "lr.png")
    assert_png(fig, tmp_path / "lr.png")
    (ax,) = fig.axes
    raw, smoothed, marker = ax.get_lines()
    assert ax.get_xscale() == "log" and list(marker.get_xdata()) == [1e-3, 1e-3]
    np.testing.assert_allclose(smoothed.get_ydata(), losses)
    assert texts(ax.get_legend().get_texts()) == ["raw loss", "smoothed loss", "suggested lr 1.00e-03"]
    assert ax.get_ylim()[1] < 2 * losses[0]  # the divergent tail is cut off


def test_metric_plots(tmp_path, metrics):
    counts = np.array(metrics["confusion"]["counts"])
    for show, titles in (("both", ["Counts", "Row-normalised (recall on diagonal)"]), ("counts", ["Counts"]),
                         ("normalized", ["Row-normalised (recall on diagonal)"])):
        fig = plots.plot_confusion_matrix(metrics["confusion"], path=tmp_path / f"cm_{show}.png", show=show)
        assert_png(fig, tmp_path / f"cm_{show}.png")
        assert [ax.get_title() for ax in fig.axes] == titles
    counts_ax, recall_ax = plots.plot_confusion_matrix(counts, CLASSES, tmp_path / "cm.png").axes
    assert texts(counts_ax.get_xticklabels()) == texts(counts_ax.get_yticklabels()) == list(CLASSES)
    assert (counts_ax.get_xlabel(), counts_ax.get_ylabel()) == ("predicted class", "true class")
    assert texts(counts_ax.texts) == [str(c) for c in counts.ravel()]  # row-major: rows are true classes
    assert texts(recall_ax.texts)[0] == f"{counts[0, 0] / counts[0].sum():.2f}"
    assert recall_ax.collections[0].get_clim() == (0, 1)

    calibration = metrics["calibration"]
    fig = plots.plot_reliability(calibration, tmp_path / "rel.png")
    assert_png(fig, tmp_path / "rel.png")
    ax, ax_count = fig.axes
    used = np.array(calibration["count"]) > 0
    bars = ax.containers[0]
    np.testing.assert_allclose([b.get_height() for b in bars], np.array(calibration["accuracy"])[used])
    assert [b.get_height() for b in ax_count.patches] == list(calibration["count"])
    assert ax.get_title() == f"Reliability diagram (ECE {calibration['ece']:.3f})"

    fig = plots.plot_per_class(metrics, tmp_path / "pc.png")
    assert_png(fig, tmp_path / "pc.png")
    (ax,) = fig.axes
    support = [metrics["per_class"][c]["support"] for c in CLASSES]
    assert texts(ax.get_xticklabels()) == [f"{c}\n(n={n})" for c, n in zip(CLASSES, support)]
    assert [len(c) for c in ax.containers] == [7, 7, 7]  # one bar per class and score
    recall = [b.get_height() for b in ax.containers[1]]
    assert recall == pytest.approx([metrics["per_class"][c]["recall"] for c in CLASSES])

    table = pd.DataFrame({"name": ["simple_cnn", "vgg", "resnet18"], "accuracy": [0.55, 0.68, 0.71],
                          "dataset": ["fer2013"] * 3})
    fig = plots.plot_comparison(table, "accuracy", path=tmp_path / "cmp.png")
    assert_png(fig, tmp_path / "cmp.png")
    (ax,) = fig.axes
    assert texts(ax.get_yticklabels()) == ["resnet18", "vgg", "simple_cnn"]
    assert [b.get_width() for b in ax.patches] == [0.71, 0.68, 0.55]
    assert texts(ax.texts) == ["0.710", "0.680", "0.550"] and ax.get_xlim()[1] <= 1
    with pytest.raises(ValueError, match="lacks"):
        plots.plot_comparison(table, "macro_f1")


def test_prediction_grid(tmp_path, batch):
    images, y = batch
    pred = y.copy()
    pred[:3] = (pred[:3] + 1) % 7
    probs = np.full((6, 7), 1 / 7)
    fig = plots.plot_prediction_grid(images, y, pred, CLASSES, tmp_path / "grid.png", probs=probs, per_group=4)
    assert_png(fig, tmp_path / "grid.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert len(titles) == 6 and sum("\n-> " in t for t in titles) == 3  # 3 right, 3 wrong: 3 columns
    assert all(t.endswith(" 0.14") for t in titles)  # the confidence of the predicted class
    wrong = {f"{CLASSES[y[i]]}\n-> {CLASSES[pred[i]]} 0.14" for i in range(3)}
    assert set(titles[3:]) == wrong
    fig = plots.plot_prediction_grid(images, y, y, CLASSES, tmp_path / "all_right.png")  # no wrong ones
    assert_png(fig, tmp_path / "all_right.png")
    assert image_count(fig) == 6 and len(fig.axes) == 12


def test_kernels_and_activations(tmp_path, model, batch):
    images, _ = batch
    kernels = first_layer_kernels(model)
    assert kernels.shape == (32, 1, 3, 3)
    fig = plots.plot_kernels(kernels, tmp_path / "k.png")
    assert_png(fig, tmp_path / "k.png")
    assert len(fig.axes) == 36 and image_count(fig) == 32  # a 6x6 grid
    np.testing.assert_array_equal(fig.axes[5].get_images()[0].get_array(), kernels[5, 0])
    layers = conv_layer_names(model)[:2]
    acts = activation_maps(model, images, layers)
    assert acts[layers[0]].shape == (6, 32, 48, 48) and acts[layers[1]].shape == (6, 64, 24, 24)
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed
    fig = plots.plot_activations(images[2], acts, tmp_path / "act.png", index=2, max_channels=6)
    assert_png(fig, tmp_path / "act.png")
    assert len(fig.axes) == image_count(fig) == 14  # per layer: the face and 6 channels
    assert [fig.axes[r * 7].get_ylabel() for r in range(2)] == layers
    np.testing.assert_array_equal(fig.axes[7].get_images()[0].get_array(), images[2])
    np.testing.assert_array_equal(fig.axes[9].get_images()[0].get_array(), acts[layers[1]][2, 1])


def test_grad_cam(tmp_path, model, batch):
    images, y = batch
    layer = conv_layer_names(model)[-1]
    cams = grad_cam(model, images, layer)
    assert cams.shape == (6, 48, 48) and cams.min() >= 0 and cams.max() <= 1
    assert np.isclose(cams.reshape(6, -1).max(1), 1).any()
    targeted = grad_cam(model, images, layer, target=y)
    assert targeted.shape == (6, 48, 48)
    assert all(p.grad is None for p in model.parameters())  # parameter gradients untouched
    with pytest.raises(KeyError, match="conv layers"):
        grad_cam(model, images, "no.such.layer")
    fig = plots.plot_gradcam(images, cams, tmp_path / "cam.png", labels=[CLASSES[i] for i in y])
    assert_png(fig, tmp_path / "cam.png")
    assert image_count(fig) == 12 and [ax.get_title() for ax in fig.axes[:6]] == [CLASSES[i] for i in y]
    np.testing.assert_allclose(fig.axes[6].get_images()[0].get_array(), plots.overlay_heatmap(images[0], cams[0]))
    overlay = plots.overlay_heatmap(images[0], cams[0])
    assert overlay.shape == (48, 48, 3) and 0 <= overlay.min() and overlay.max() <= 1


def test_face_rows_lay_out_versions_of_the_same_faces(tmp_path, batch):
    faces = batch[0][:4]
    rows = {"photo": faces, "flipped": faces[:, :, ::-1]}
    fig = plots.plot_face_rows(rows, ["a", "b", "c", "d"], tmp_path / "rows.png", title="versions")
    assert_png(fig, tmp_path / "rows.png")
    assert len(fig.axes) == 8 and fig.axes[0].get_ylabel() == "photo" and fig.axes[4].get_ylabel() == "flipped"
    assert [ax.get_title() for ax in fig.axes[:4]] == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(fig.axes[6].get_images()[0].get_array(), faces[2, :, ::-1])
    with pytest.raises(ValueError, match="every row needs 4 faces"):
        plots.plot_face_rows({"photo": faces, "fewer": faces[:3]})


def test_comparison_keeps_table_order_when_asked():
    table = pd.DataFrame({"group": ["low", "mid", "high"], "accuracy": [0.5, 0.9, 0.7]})
    labels = [t.get_text() for t in plots.plot_comparison(table, label="group", sort=False).axes[0].get_yticklabels()]
    assert labels == ["low", "mid", "high"]
    ranked = [t.get_text() for t in plots.plot_comparison(table, label="group").axes[0].get_yticklabels()]
    assert ranked == ["mid", "high", "low"]


def test_comparison_averages_repeated_rows_with_std_error_bars():
    folds = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "init": ["x"] * 6, "accuracy": [0.5, 0.6, 0.7, 0.9, 0.9, 0.9]})
    ax = plots.plot_comparison(folds, label="model", hue="init", errorbar="sd").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]  # ranked by the mean
    assert sorted(round(bar.get_width(), 6) for bar in ax.patches if bar.get_width()) == [0.6, 0.9]
    spans = sorted(round(float(np.nanmax(line.get_xdata()) - np.nanmin(line.get_xdata())), 6) for line in ax.lines)
    assert spans == [0.0, pytest.approx(0.2)]  # b has no spread; a: mean +/- one sample std (0.1)


def test_comparison_reference_lines_labels_clear_of_error_bars_and_stable_hue_colours():
    seeds = pd.DataFrame({"name": ["a"] * 3 + ["b"], "accuracy": [0.60, 0.62, 0.64, 0.55]})
    ax = plots.plot_comparison(seeds, errorbar="sd", references={"majority class": 0.2494}).axes[0]
    assert any(list(line.get_xdata()) == [0.2494, 0.2494] for line in ax.lines)
    assert "majority class: 0.249" in [t.get_text() for t in ax.get_legend().get_texts()]
    bar_a, labels = ax.patches[0], list(ax.texts)
    assert {t.get_text() for t in labels} == {"0.620", "0.550"}
    assert all(t.get_position()[0] < bar_a.get_width() for t in labels)  # inside the bars, not on the caps
    colours = []
    for order in (["scratch", "fer2013"], ["fer2013", "scratch"]):  # groups listed in either order
        frame = pd.DataFrame({"model": ["m", "m"], "init": order, "accuracy": [0.5, 0.6]})
        legend = plots.plot_comparison(frame, label="model", hue="init").axes[0].get_legend()
        colours.append({t.get_text(): h.get_facecolor() for t, h in zip(legend.get_texts(), legend.legend_handles)})
    assert colours[0] == colours[1]


def test_tradeoff_draws_one_log_panel_per_cost_with_named_points():
    table = pd.DataFrame({"name": ["resnet18", "resnet50"], "accuracy": [0.62, 0.64], "params (M)": [11.2, 23.5],
                          "train hours": [0.5, 1.8]})
    fig = plots.plot_tradeoff(table, {"params (M)": "parameters (millions)", "train hours": "training hours"})
    assert [ax.get_xlabel() for ax in fig.axes] == ["parameters (millions)", "training hours"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    assert [t.get_text() for t in fig.axes[1].texts] == ["resnet18", "resnet50"]
    assert list(fig.axes[1].collections[0].get_offsets()[:, 0]) == [0.5, 1.8]
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[1].xaxis.get_ticklabels(minor=True) if t.get_text()]
    assert {"0.5", "2"} <= set(labels) and not any("e" in text or "10^" in text for text in labels)  # plain numbers
    close = plots.plot_tradeoff(table.assign(accuracy=[0.627, 0.629]), {"train hours": "hours"})
    low, high = close.axes[0].get_ylim()
    assert high - low >= 0.04  # a 0.2-point gap does not fill the panel
    crowded = pd.DataFrame({"name": ["resnet18", "resnet34", "densenet121"], "accuracy": [0.629, 0.627, 0.627],
                            "train hours": [0.7, 4.9, 4.8]})  # the last two runs sit at one point
    fig = plots.plot_tradeoff(crowded, {"train hours": "hours"}, references={"vgg_small": 0.635})
    offsets = [t.xyann[1] for t in fig.axes[0].texts]
    assert offsets[0] > 0 and offsets[2] > 0 > offsets[1]  # the right one's label goes below, not over the other
    legend = fig.axes[0].get_legend()
    assert fig.axes[0].get_ylim()[1] > 0.635 and legend.get_texts()[0].get_text() == "vgg_small: 0.635"
    with pytest.raises(ValueError, match="train hours"):
        plots.plot_tradeoff(table.drop(columns="train hours"), {"train hours": "hours"})
