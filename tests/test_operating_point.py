"""The decision threshold: chosen by its rule on the scores it is given."""

import numpy as np
import pytest

from components import operating_point
from schema import settings


def _scores(seed=0, n=400):
  """Pneumonia scores above normal ones on average, overlapping."""
  rng = np.random.default_rng(seed)
  positive = rng.random(n) < 0.6
  scores = np.clip(rng.normal(np.where(positive, 0.7, 0.35), 0.15), 0, 1)
  return scores.astype(np.float32), positive


def _best(scores, positive, target, kind):
  """Brute force: the best (specificity or sensitivity) any threshold
  reaching the target gives, over every score as a threshold."""
  best = 0.0
  for t in np.unique(np.concatenate([scores, [np.float32(2.0)]])):
    sensitivity, specificity = operating_point.rates(scores, positive, t)
    if kind == "sensitivity" and sensitivity >= target:
      best = max(best, specificity)
    if kind == "specificity" and specificity >= target:
      best = max(best, sensitivity)
  return best


@pytest.mark.parametrize("kind", ["sensitivity", "specificity"])
@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_the_rule_reaches_its_target_with_the_best_other_rate(kind, target):
  scores, positive = _scores(int(target * 100))
  t = operating_point.choose_threshold(scores, positive, (kind, target))
  sensitivity, specificity = operating_point.rates(scores, positive, t)
  reached, other = ((sensitivity, specificity) if kind == "sensitivity"
                    else (specificity, sensitivity))
  assert reached >= target
  assert other == _best(scores, positive, target, kind)
  # Not on a score's edge: strictly between two neighbouring scores.
  assert t not in set(scores.tolist())


def test_the_threshold_sits_mid_gap_on_the_logit_scale():
  # Pneumonias at 0.999 and 0.9999, normals at 0.01 and 0.2: every
  # threshold in (0.2, 0.999] finds both pneumonias and clears both normals;
  # the middle on the logit scale is well inside, not at 0.999.
  scores = np.array([0.01, 0.2, 0.999, 0.9999], np.float32)
  positive = np.array([False, False, True, True])
  t = operating_point.choose_threshold(scores, positive, ("sensitivity", 0.95))
  logit = lambda p: np.log(p / (1 - p))
  assert t == pytest.approx(1 / (1 + np.exp(-(logit(0.2) + logit(0.999)) / 2)),
                            rel=1e-5)
  t = operating_point.choose_threshold(scores, positive, ("specificity", 0.9))
  assert 0.2 < t < 0.999


def test_a_given_threshold_is_kept():
  scores, positive = _scores()
  assert operating_point.choose_threshold(
      scores, positive, settings.parse_operating_point("threshold=0.3")) \
      == pytest.approx(0.3)


def test_the_threshold_depends_on_the_split_it_is_chosen_on():
  # Chosen on one sample it differs from the one chosen on another: what
  # the Trainer test relies on to see that only eval data was used.
  a = operating_point.choose_threshold(*_scores(2), ("sensitivity", 0.95))
  b = operating_point.choose_threshold(*_scores(3), ("sensitivity", 0.95))
  assert a != b


def test_a_rule_without_the_class_it_needs_is_a_clear_error():
  scores = np.array([0.2, 0.4], np.float32)
  with pytest.raises(ValueError, match="no"):
    operating_point.choose_threshold(scores, np.array([False, False]),
                                     ("sensitivity", 0.9))


@pytest.mark.parametrize("text", ["sensitivity", "recall=0.9",
                                  "sensitivity=1.2", "threshold=x",
                                  "specificity=0"])
def test_bad_operating_points_are_refused(text):
  with pytest.raises(ValueError, match="operating point"):
    settings.parse_operating_point(text)


def test_an_eval_split_without_the_needed_class_keeps_half_and_says_so():
  scores = np.array([0.2, 0.4, 0.7], np.float32)
  described = operating_point.describe(scores, np.zeros(3, bool),
                                       ("sensitivity", 0.95))
  assert described["threshold"] == operating_point.FALLBACK_THRESHOLD
  assert "no" in described["note"] and "kept 0.5" in described["note"]
  assert described["eval_specificity"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("rule", [("sensitivity", 0.95),
                                  ("specificity", 0.90)])
def test_the_threshold_range_brackets_it_and_narrows_with_more_eval_data(
    rule):
  widths = []
  for n in (200, 5000):
    scores, positive = _scores(seed=3, n=n)
    described = operating_point.describe(scores, positive, rule, seed=1)
    low, high = described["threshold_range"]
    assert low <= described["threshold"] <= high
    widths.append(high - low)
  assert widths[1] < widths[0] / 3  # about 1/sqrt(25) of it


def test_the_threshold_range_is_seeded_and_absent_for_a_given_threshold():
  scores, positive = _scores()
  rule = ("sensitivity", 0.95)
  assert (operating_point.threshold_range(scores, positive, rule, seed=4)
          == operating_point.threshold_range(scores, positive, rule, seed=4))
  assert operating_point.threshold_range(
      scores, positive, ("threshold", 0.3)) is None
  assert "threshold_range" not in operating_point.describe(
      scores, positive, ("threshold", 0.3))
