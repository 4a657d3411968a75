"""Training curves: accuracy and loss, training vs validation, one figure per model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def plot_history(history: dict[str, list[float]], title: str, path: Path) -> Path:
    """Write a two-panel PNG (accuracy, loss) from a Keras history dict."""
    epochs = range(1, len(history.get("loss", [])) + 1)
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in ((accuracy_axis, "accuracy"), (loss_axis, "loss")):
        axis.plot(epochs, history.get(metric, []), marker="o", label="training")
        axis.plot(epochs, history.get(f"val_{metric}", []), marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.set_title(metric.capitalize())
        axis.grid(alpha=0.3)
        axis.legend()
    accuracy_axis.set_ylim(0, 1.02)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
