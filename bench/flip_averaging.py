"""Test-time horizontal-flip averaging, side by side with the plain model,
on the pushed model of a finished run (no training).

  .venv/bin/python bench/flip_averaging.py OUT [OUT...]
      [--operating-point RULE]

For each run folder OUT (`cxr run --output OUT`, e.g. from
bench/train_real.py), takes the newest pushed model under OUT/serving and
the eval and test splits ImageExampleGen wrote for that run, and scores
every image twice through the model's serving_default: as ingested, and
flipped left-right. Both are sent as PNG (decoded and re-encoded losslessly
with TensorFlow), so the two differ only by the flip. For P(pneumonia)
alone and for the mean of the two, the threshold is chosen on the eval
split with --operating-point (the runs' rule, default the pipeline's;
components/operating_point.py) and
the test split's accuracy, sensitivity and specificity are read at it,
with the test AUC. With several runs, their ensemble too: the mean
P(pneumonia) of the images every run scored (a 3-class run's is
1 - P(normal), as served). Prints one Markdown row per run and contender.
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import numpy as np  # pylint: disable=g-bad-import-order
from sklearn import metrics as sk_metrics
import tensorflow as tf

from components import operating_point
from pipeline import summary
from schema import contract
from schema import layout
from schema import settings

BATCH = 32


def _newest_model(serving: str) -> str:
  versions = [(v, path) for versions in layout.served_models(serving).values()
              for v, path in versions.items()]
  if not versions:
    raise SystemExit(f"no pushed model under {serving}")
  return max(versions)[1]


def _split_examples(out: str, split: str):
  """(keys, encoded images, labels) of a split, from the newest ingest; an
  image's key is its (source, file name)."""
  keys, images, labels = [], [], []
  for example in summary.ingested_examples(out, split):
    feature = example.features.feature
    keys.append(tuple(feature[k].bytes_list.value[0] for k in
                      (contract.SOURCE_KEY, contract.FILE_NAME_KEY)))
    images.append(feature[contract.IMAGE_KEY].bytes_list.value[0])
    labels.append(feature[contract.LABEL_KEY].int64_list.value[0])
  return keys, images, np.array(labels)


def _as_png(encoded: bytes, flip: bool) -> bytes:
  image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
  if flip:
    image = tf.image.flip_left_right(image)
  return tf.io.encode_png(image).numpy()


def _probabilities(signature, images, flip: bool) -> np.ndarray:
  out = []
  for start in range(0, len(images), BATCH):
    batch = [_as_png(x, flip) for x in images[start:start + BATCH]]
    result = signature(**{contract.IMAGES_INPUT: tf.constant(batch)})
    out.append(result[contract.PNEUMONIA_PROBABILITY].numpy().reshape(-1))
  return np.concatenate(out)


def score_run(out: str):
  """{split: {key: (pneumonia?, P plain, P flipped)}} of a run's model."""
  model_dir = _newest_model(layout.output_paths(out).serving)
  signature = tf.saved_model.load(model_dir).signatures[
      contract.SERVING_DEFAULT]
  scored = {}
  for split in (contract.EVAL, contract.TEST):
    keys, images, labels = _split_examples(out, split)
    positive = operating_point.is_pneumonia(labels)
    plain = _probabilities(signature, images, flip=False)
    flipped = _probabilities(signature, images, flip=True)
    scored[split] = {k: (p, a, b)
                     for k, p, a, b in zip(keys, positive, plain, flipped)}
  return scored


def row(name: str, scored_by, contender: str, rule) -> str:
  """A Markdown row: the threshold chosen on eval, the test figures at it.

  scored_by: {split: (keys, pneumonia?, P)}.
  """
  _, eval_positive, eval_scores = scored_by[contract.EVAL]
  _, test_positive, test_scores = scored_by[contract.TEST]
  threshold = operating_point.choose_threshold(eval_scores, eval_positive,
                                               rule)
  sensitivity, specificity = operating_point.rates(test_scores, test_positive,
                                                   threshold)
  accuracy = float(np.mean((test_scores >= threshold) == test_positive))
  auc = sk_metrics.roc_auc_score(test_positive, test_scores)
  return (f"| {name} | {contender} | {len(test_positive)} | {auc:.4f} | "
          f"{threshold:.4f} | {accuracy:.4f} | {sensitivity:.4f} | "
          f"{specificity:.4f} |")


def combine(runs, flip: bool):
  """{split: (keys, pneumonia?, P)}: the mean over runs (and over the flip
  when `flip`) of each image every run scored."""
  out = {}
  for split in (contract.EVAL, contract.TEST):
    keys = sorted(set.intersection(*(set(r[split]) for r in runs)))
    positive = np.array([runs[0][split][k][0] for k in keys])
    for r in runs[1:]:
      if any(r[split][k][0] != runs[0][split][k][0] for k in keys):
        raise SystemExit("the runs disagree on whether an image is pneumonia")
    scores = np.mean([[(r[split][k][1] + r[split][k][2]) / 2 if flip
                       else r[split][k][1] for k in keys] for r in runs],
                     axis=0)
    out[split] = (keys, positive, scores)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("out", nargs="+", help="run folders (cxr run --output)")
  parser.add_argument("--operating-point",
                      default=settings.TrainingSettings().operating_point,
                      help="the rule the runs were trained with")
  args = parser.parse_args(argv)
  rule = settings.parse_operating_point(args.operating_point)
  print("| run | scored | test images | AUC | threshold (eval) | accuracy "
        "| sensitivity | specificity |")
  print("|---|---|---|---|---|---|---|---|")
  runs = []
  for out in args.out:
    runs.append(score_run(out))
    name = os.path.basename(out.rstrip("/"))
    for contender, flip in (("plain", False), ("flip-averaged", True)):
      print(row(name, combine(runs[-1:], flip), contender, rule), flush=True)
  if len(runs) > 1:
    for contender, flip in (("ensemble", False),
                            ("ensemble, flip-averaged", True)):
      print(row(f"all {len(runs)}", combine(runs, flip), contender, rule))
  return 0


if __name__ == "__main__":
  sys.exit(main())
