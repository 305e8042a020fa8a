"""Does Grad-CAM point at the lesion? A cnn_aug model on synthetic X-rays.

  .venv/bin/python bench/gradcam_lesions.py [--n 400] [--size 128]
      [--image-size 96] [--epochs 25] [--out build/bench/gradcam]
      [--reexport]

Generates synthetic images with known lesion boxes, runs the whole pipeline
(cnn_aug, binary), loads the pushed model and asks its `gradcam` signature
to explain every test pneumonia image, once per method (gradcam, hirescam);
prints the share of correctly classified ones whose heat-map peak falls
inside a lesion box, overall and per kind.
"""

import argparse
import glob
import os
import time

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
from pipeline import runner  # pylint: disable=g-bad-import-order
from pipeline import synthetic
from schema import contract
from schema import layout
from schema import settings
from serving.export import signatures
import exported
import tensorflow as tf  # pylint: disable=g-bad-import-order
import tensorflow_transform as tft

MODEL = contract.CNN_AUG
TASK = contract.BINARY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=400)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--image-size", type=int, default=96)
  parser.add_argument("--epochs", type=int, default=25)
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--out", default=os.path.join(REPO, "build", "bench",
                                                    "gradcam"))
  parser.add_argument("--reexport", action="store_true",
                      help="skip training: export the weights pushed by an "
                      "earlier run in --out again with the current serving "
                      "code, and measure that")
  parser.add_argument("--gradcam-layer", default="",
                      help="layer to explain (default: the last conv map)")
  parser.add_argument("--fresh-test", type=int, default=0, metavar="N",
                      help="also measure on N new images, all in the test "
                      "split (same generator, another seed): a larger "
                      "sample than the run's own test split")
  args = parser.parse_args()
  data = os.path.join(args.out, "data")
  run_dir = os.path.join(args.out, "run")
  if args.reexport:
    pushed = reexport(run_dir, args.image_size, args.gradcam_layer)
    seconds = 0.0
  else:
    synthetic.generate(data, n=args.n, size=args.size, seed=args.seed)
    start = time.perf_counter()
    runner.run(data, TASK, run_dir,
               # Grad-CAM is the question here, not the metrics' intervals.
               settings.RunSettings(models=(MODEL,), enable_cache=False,
                                    confidence_intervals=False),
               settings.TrainingSettings(
                   image_size=args.image_size, epochs=args.epochs,
                   batch_size=16, seed=args.seed,
                   gradcam_layer=args.gradcam_layer),
               settings.GateSettings(min_accuracy=0.5, min_auc=0.5,
                                     min_recall=0.0))
    seconds = time.perf_counter() - start
    pushed = latest_push(run_dir)
  model = tf.saved_model.load(pushed)
  signature = model.signatures[contract.GRADCAM]
  trained = ("weights of the earlier run, re-exported" if args.reexport
             else f"epochs={args.epochs}: pipeline {seconds:.0f} s")
  print(f"n={args.n} size={args.size} image_size={args.image_size} "
        f"layer={args.gradcam_layer or 'default'}, {trained}")
  test_sets = {"the run's test split": data}
  if args.fresh_test:
    fresh = os.path.join(args.out, f"fresh-test-{args.fresh_test}")
    if not os.path.exists(os.path.join(fresh, synthetic.LESIONS_FILE)):
      synthetic.generate(fresh, n=args.fresh_test, size=args.size,
                         seed=args.seed + 1000, test_fraction=1.0)
    test_sets[f"{args.fresh_test} fresh images"] = fresh
  for name, directory in test_sets.items():
    for method in contract.GRADCAM_METHODS:

      def explain(encoded, method=method):
        out = signature(**{
            contract.IMAGES_INPUT: tf.constant(encoded),
            contract.CLASS_INDEX_INPUT: tf.constant([], tf.int32),
            contract.METHOD_INPUT: tf.constant(method)})
        return (out[contract.CLASS_ID].numpy(),
                out[contract.HEATMAP].numpy())

      counts = synthetic.lesion_hits(directory, explain)
      kinds = ", ".join(
          f"{kind} {c['hits']}/{c['explained']}"
          for kind, c in sorted(counts["kinds"].items()))
      print(f"{name}, {method}: {counts['explained']} of "
            f"{counts['pneumonia']} pneumonia images called pneumonia; peak "
            f"inside the lesion for {counts['hits']} = "
            f"{synthetic.hit_rate(counts):.3f} ({kinds})")


def latest_push(run_dir: str) -> str:
  """The model the latest run pushed (or found already served)."""
  pushed = exported.model_result(run_dir, TASK, MODEL).pushed_model
  if not pushed:
    raise SystemExit(f"the latest run in {run_dir} pushed no {MODEL}")
  return pushed


def reexport(run_dir: str, image_size: int, gradcam_layer: str) -> str:
  """The latest pushed weights, exported again by today's signatures."""
  model = exported.trained_keras_model(latest_push(run_dir), MODEL, TASK,
                                       image_size)
  # The newest TransformGraph under the run's pipeline root: the latest
  # run's (the run summary does not name it).
  graph = max(glob.glob(os.path.join(
      layout.output_paths(run_dir).pipeline_root, "Transform",
      "transform_graph", "*")), key=os.path.getmtime)
  out = os.path.join(run_dir, "reexported", gradcam_layer or "default")
  signatures.export_serving_model(model, tft.TFTransformOutput(graph), out,
                                  TASK, image_size, gradcam_layer or None)
  return out


if __name__ == "__main__":
  main()
