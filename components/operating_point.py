"""The decision threshold on P(pneumonia), chosen on the eval split.

A screening tool runs at one operating point; the served decision is
"pneumonia" when P(pneumonia) >= threshold. The rule names what the
threshold must reach on the eval split (schema.settings.OPERATING_RULES):

* sensitivity=S: the highest threshold whose sensitivity is at least S
  (the fewest false alarms that still find S of the pneumonias);
* specificity=S: the lowest threshold whose specificity is at least S;
* threshold=T: T as given.

A chosen threshold comes with the range the rule gives on bootstrap
resamples of the same eval split (`threshold_range`): on a few hundred
eval images the k-th highest score is one image's, and the range says how
much the threshold owes to which images happened to be drawn.

For a 3-class model P(pneumonia) is 1 - P(normal) and a label other than
normal is pneumonia, so both tasks share the rule (the scores come from
serving.export.signatures.pneumonia_probability, the served formula).
"""

from typing import Dict, Optional, Tuple

import numpy as np

from schema import contract


def is_pneumonia(labels: np.ndarray) -> np.ndarray:
  return np.asarray(labels) != contract.NORMAL_CLASS


def rates(scores: np.ndarray, positive: np.ndarray,
          threshold: float) -> Tuple[float, float]:
  """(sensitivity, specificity) of `scores >= threshold`; nan without
  positives or negatives."""
  decided = np.asarray(scores) >= threshold
  positive = np.asarray(positive, bool)
  with np.errstate(invalid="ignore"):
    sensitivity = float(np.mean(decided[positive])) if positive.any() \
        else float("nan")
    specificity = float(np.mean(~decided[~positive])) if (~positive).any() \
        else float("nan")
  return sensitivity, specificity


def _logit(p: np.ndarray) -> np.ndarray:
  p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
  return np.log(p) - np.log1p(-p)


def _between(low: float, high: float) -> float:
  """A threshold in (low, high]: their midpoint on the logit scale, where
  a confident model's scores are spread out (0.999 and 0.9999 lie far
  apart there), else high itself."""
  if not np.isfinite(low):
    return float(high)
  middle = np.float32(1.0 / (1.0 + np.exp(-(_logit(low) + _logit(high)) / 2)))
  return float(middle) if low < middle <= high else float(high)


def choose_threshold(scores: np.ndarray, positive: np.ndarray,
                     rule: Tuple[str, float]) -> float:
  """The threshold the rule picks on these (eval) scores and labels.

  Every threshold between two neighbouring scores makes the same
  decisions on these images. The rule fixes which gap: for
  sensitivity=S, the one just below the k-th highest pneumonia score
  (k = ceil(S * pneumonias)), which finds S of them with the most normals
  cleared; for specificity=S, the one just above the k-th lowest normal
  score. Within the gap the threshold sits at its middle on the logit
  scale rather than on the edge: the same figures here, and a margin
  either way for images not seen yet (on a small eval split the edge is
  one image's score).
  """
  kind, value = rule
  if kind == "threshold":
    return float(value)
  scores = np.asarray(scores, np.float32)
  positive = np.asarray(positive, bool)
  wanted = scores[positive] if kind == "sensitivity" else scores[~positive]
  if wanted.size == 0:
    raise ValueError(
        f"choosing a threshold for {kind}={value:g} needs "
        f"{'pneumonia' if kind == 'sensitivity' else 'normal'} images in "
        "the eval split; it has none (give --operating-point threshold=T)")
  # k of the n must be on the right side of the threshold.
  k = int(np.ceil(value * wanted.size - 1e-9))
  if kind == "sensitivity":
    # Decided positive when >= threshold: at most the k-th highest
    # pneumonia score, above every score below it.
    edge = np.sort(wanted)[::-1][k - 1]
    below = scores[scores < edge]
    return _between(below.max() if below.size else -np.inf, edge)
  # Decided negative when < threshold: above the k-th lowest normal score,
  # at most the next score up.
  edge = np.sort(wanted)[k - 1]
  above = scores[scores > edge]
  if not above.size:
    return float(np.nextafter(edge, np.float32(np.inf)))
  return _between(edge, above.min())


# The threshold kept when the eval split cannot choose one.
FALLBACK_THRESHOLD = 0.5
# Bootstrap resamples of the eval split behind a threshold's range, and the
# share of the resamples the range covers.
RESAMPLES = 1000
RANGE_COVERAGE = 0.95


def threshold_range(scores: np.ndarray, positive: np.ndarray,
                    rule: Tuple[str, float], seed: int = 0,
                    resamples: int = RESAMPLES
                    ) -> Optional[Tuple[float, float]]:
  """The central RANGE_COVERAGE of the thresholds the rule picks on
  bootstrap resamples of these scores (images drawn with replacement,
  seeded); None for a given threshold, or when fewer than half of the
  resamples hold the class the rule needs."""
  if rule[0] == "threshold":
    return None
  scores = np.asarray(scores, np.float32)
  positive = np.asarray(positive, bool)
  rng = np.random.default_rng(seed)
  picked = []
  for _ in range(resamples):
    drawn = rng.integers(0, len(scores), len(scores))
    try:
      picked.append(choose_threshold(scores[drawn], positive[drawn], rule))
    except ValueError:  # a resample without the class the rule needs
      continue
  if len(picked) < resamples / 2:
    return None
  tail = (1 - RANGE_COVERAGE) / 2 * 100
  low, high = np.percentile(picked, [tail, 100 - tail])
  return float(low), float(high)


def describe(scores: np.ndarray, positive: np.ndarray,
             rule: Tuple[str, float], seed: int = 0) -> Dict[str, object]:
  """The chosen threshold, its bootstrap range (`threshold_range`, when
  there is one) and what it gives on the scores it was chosen on.

  An eval split lacking the class the rule needs keeps FALLBACK_THRESHOLD,
  and the answer's `note` says why (the run summary prints it).
  """
  out = {"rule": f"{rule[0]}={rule[1]:g}", "eval_examples": int(len(scores))}
  try:
    out["threshold"] = choose_threshold(scores, positive, rule)
  except ValueError as e:
    out["threshold"] = FALLBACK_THRESHOLD
    out["note"] = f"{e}; kept {FALLBACK_THRESHOLD}"
  else:
    bounds = threshold_range(scores, positive, rule, seed)
    if bounds is not None:
      out["threshold_range"] = list(bounds)
  out["eval_sensitivity"], out["eval_specificity"] = rates(
      scores, positive, out["threshold"])
  return out
