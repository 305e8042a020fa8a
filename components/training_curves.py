"""Training curves as PNG: train vs validation accuracy and loss per epoch.

The pictures of the thesis's figures 20/24/27/28, drawn from history.json.
"""

import io
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")  # No display on training machines.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import ticker  # pylint: disable=g-import-not-at-top


def plot_history(history: Dict[str, List[float]], title: str) -> bytes:
  """PNG bytes: accuracy (left) and loss (right), train and validation."""
  epochs = range(1, len(history["loss"]) + 1)
  figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
  for ax, metric in zip(axes, ("accuracy", "loss")):
    ax.plot(epochs, history[metric], "o-", label=f"train {metric}")
    if f"val_{metric}" in history:
      ax.plot(epochs, history[f"val_{metric}"], "s-",
              label=f"validation {metric}")
    exported = history.get("exported_epoch")
    if exported:
      ax.axvline(exported, color="grey", linestyle=":",
                 label=f"exported epoch {exported}")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
  figure.suptitle(title)
  figure.tight_layout()
  buf = io.BytesIO()
  figure.savefig(buf, format="png")
  plt.close(figure)
  return buf.getvalue()
