"""Temperature scaling (Guo et al. 2017) of a trained model, and the
measures of calibration the report shows.

One scalar T > 0 divides the model's logits: p = sigmoid(z / T) for the
binary task, softmax(z / T) for 3-class. T is fitted on the eval split by
minimising the negative log-likelihood; it changes no ranking (AUC and
arg-max stay) and only the confidence. It is saved in the model by dividing
the output layer's kernel and bias by T, so the exported graph, TFMA, the
gradcam signature and every client see the calibrated probabilities with no
extra op to keep in step.
"""

from typing import Dict, List, Tuple

import numpy as np
from scipy import optimize
from scipy import special
import tensorflow as tf

RELIABILITY_BINS = 10
# log T is searched in this interval: T from e^-4 (sharpen) to e^4 (soften).
_LOG_T_BOUNDS = (-4.0, 4.0)


def _as_logits(logits: np.ndarray) -> np.ndarray:
  """[n, 1] binary logits z -> [n, 2] class logits [0, z]: softmax of these
  is [1 - sigmoid(z), sigmoid(z)], so one formula serves both tasks."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim == 1:
    logits = logits[:, None]
  if logits.shape[1] == 1:
    return np.concatenate([np.zeros_like(logits), logits], axis=1)
  return logits


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
  """[n, classes] class probabilities of logits divided by temperature."""
  return special.softmax(_as_logits(logits) / temperature, axis=1)


def nll(logits: np.ndarray, labels: np.ndarray,
        temperature: float = 1.0) -> float:
  """Mean negative log-likelihood of the labels."""
  log_p = special.log_softmax(_as_logits(logits) / temperature, axis=1)
  return float(-np.mean(log_p[np.arange(len(labels)), labels]))


class NoTemperatureError(ValueError):
  """No finite temperature minimises the NLL (the search ran to a bound)."""


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
  """The T minimising the NLL of labels under logits / T (bounded search).

  Raises NoTemperatureError when the sharpest temperature searched does as
  well as the minimum found: an eval split the logits separate perfectly has its NLL fall towards 0 as
  T -> 0, and sharpening a model to certainty on a few images is no
  calibration.
  """
  labels = np.asarray(labels, np.int64)
  if len(labels) == 0:
    raise ValueError("temperature scaling needs eval examples; the eval "
                     "split is empty")
  result = optimize.minimize_scalar(
      lambda log_t: nll(logits, labels, float(np.exp(log_t))),
      bounds=_LOG_T_BOUNDS, method="bounded")
  sharpest = nll(logits, labels, float(np.exp(_LOG_T_BOUNDS[0])))
  if sharpest <= result.fun + 1e-12:
    raise NoTemperatureError(
        f"no temperature minimises the eval split's NLL: it only falls as "
        f"T -> 0, the {len(labels)} eval images being separated perfectly")
  return float(np.exp(result.x))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
  """Mean squared distance between the probabilities and the one-hot label
  (for two classes: twice the usual binary Brier score)."""
  one_hot = np.eye(probs.shape[1])[labels]
  return float(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))


def reliability(probs: np.ndarray, labels: np.ndarray,
                bins: int = RELIABILITY_BINS) -> List[Dict[str, float]]:
  """Per confidence bin (equal width on the top class's probability): the
  bin's range, its examples, their mean confidence and accuracy."""
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  edges = np.linspace(0.0, 1.0, bins + 1)
  index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
  out = []
  for b in range(bins):
    members = index == b
    n = int(members.sum())
    out.append({"low": float(edges[b]), "high": float(edges[b + 1]),
                "count": n,
                "confidence": float(confidence[members].mean()) if n else 0.0,
                "accuracy": float(correct[members].mean()) if n else 0.0})
  return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = RELIABILITY_BINS) -> float:
  """ECE: the bins' |accuracy - confidence|, weighted by their share."""
  total = len(labels)
  return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                   for b in reliability(probs, labels, bins)))


def measures(logits: np.ndarray, labels: np.ndarray,
             temperature: float) -> Dict[str, object]:
  """NLL, ECE, Brier score and the reliability bins at a temperature."""
  probs = probabilities(logits, temperature)
  return {"nll": nll(logits, labels, temperature),
          "ece": expected_calibration_error(probs, labels),
          "brier": brier(probs, labels),
          "reliability": reliability(probs, labels)}


def output_layer(model: tf.keras.Model) -> tf.keras.layers.Dense:
  """The model's last layer: the Dense sigmoid/softmax head of every model."""
  head = model.layers[-1]
  if not isinstance(head, tf.keras.layers.Dense):
    raise ValueError(f"{model.name} does not end in a Dense layer; "
                     f"temperature scaling needs its logits")
  return head


def logits_and_labels(model: tf.keras.Model, dataset: tf.data.Dataset
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """The output layer's logits [n, units] (float64) and the labels [n] of
  every (images, labels) batch of the dataset."""
  head = output_layer(model)
  features = tf.keras.Model(model.inputs, head.input)
  kernel = head.kernel.numpy().astype(np.float64)
  bias = head.bias.numpy().astype(np.float64) if head.use_bias else 0.0
  logits, labels = [], []
  for images, batch_labels in dataset:
    x = features(images, training=False).numpy().astype(np.float64)
    logits.append(x @ kernel + bias)
    labels.append(np.asarray(batch_labels).reshape(-1))
  if not logits:
    return np.zeros((0, kernel.shape[1])), np.zeros((0,), np.int64)
  return np.concatenate(logits), np.concatenate(labels).astype(np.int64)


def apply_temperature(model: tf.keras.Model, temperature: float) -> None:
  """Divides the output layer's kernel and bias by temperature, in place:
  the model's outputs become softmax(z / T) (sigmoid(z / T))."""
  if not temperature > 0:
    raise ValueError(f"temperature must be positive, got {temperature}")
  head = output_layer(model)
  for weight in (head.kernel, head.bias) if head.use_bias else (head.kernel,):
    weight.assign(weight / temperature)
