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


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_sensitivity_rule_gives_the_highest_threshold_reaching_it(target):
  scores, positive = _scores()
  t = operating_point.choose_threshold(scores, positive,
                                       ("sensitivity", target))
  sensitivity, _ = operating_point.rates(scores, positive, t)
  assert sensitivity >= target
  # Any higher threshold (the next score up) falls short.
  higher = np.min(scores[scores > t])
  assert operating_point.rates(scores, positive, higher)[0] < target


@pytest.mark.parametrize("target", [0.8, 0.9, 0.97])
def test_specificity_rule_gives_the_lowest_threshold_reaching_it(target):
  scores, positive = _scores(1)
  t = operating_point.choose_threshold(scores, positive,
                                       ("specificity", target))
  assert operating_point.rates(scores, positive, t)[1] >= target
  lower = np.max(scores[scores < t])
  assert operating_point.rates(scores, positive, lower)[1] < target


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
