"""The `cxr` command line.

  cxr synth OUT_DIR [--n N --size S --seed K]    synthetic chest X-rays
  cxr run --data DIR --task binary|multiclass|both --output OUT [...]
  cxr models [--task binary|multiclass --image-size S]
  cxr summary --output OUT --task binary|multiclass
  cxr serve --model-base OUT/serving [--port 8500 --rest-port 8501 ...]
  cxr predict IMAGE... --server HOST:PORT --model NAME [--gradcam OUT_DIR]
"""

import argparse
import os
import signal
import sys
from typing import List, Optional

# Keras 2 before TensorFlow is imported anywhere (see components/__init__).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
import grpc  # pylint: disable=g-import-not-at-top
from components import image_layouts  # pylint: disable=g-import-not-at-top
from components import models  # pylint: disable=g-import-not-at-top
from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
from pipeline import report  # pylint: disable=g-import-not-at-top
from pipeline import runner  # pylint: disable=g-import-not-at-top
from pipeline import summary  # pylint: disable=g-import-not-at-top
from pipeline import synthetic  # pylint: disable=g-import-not-at-top
from serving import client as serving_client  # pylint: disable=g-import-not-at-top
from serving import server as serving_server  # pylint: disable=g-import-not-at-top
from serving import gradcam  # pylint: disable=g-import-not-at-top


def _synth(args) -> int:
  counts = synthetic.generate(args.out_dir, n=args.n, size=args.size,
                              seed=args.seed)
  total = sum(counts.values())
  print(f"wrote {total} images to {args.out_dir}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
  print(f"lesion boxes: {os.path.join(args.out_dir, synthetic.LESIONS_FILE)}")
  return 0


def _print_summary(output: str, task: str) -> Optional[summary.RunSummary]:
  try:
    result = summary.summarize(runner.output_paths(output)["metadata"],
                               runner.pipeline_name_for(task))
  except (FileNotFoundError, ValueError) as e:
    print(f"no run summary: {e}")
    return None
  print("\n".join(result.lines()))
  return result


def _run(args) -> int:
  # Components report progress (ingestion counts, training ETA) at INFO.
  absl_logging.set_verbosity(absl_logging.INFO)
  settings = pipeline_lib.TrainingSettings(
      models=args.models, image_size=args.image_size, epochs=args.epochs,
      batch_size=args.batch_size, learning_rate=args.learning_rate,
      seed=args.seed, weights=args.weights, class_weight=args.class_weight,
      fine_tune_layers=args.fine_tune_layers,
      fine_tune_epochs=args.fine_tune_epochs,
      mixed_precision=args.mixed_precision, xla=args.xla,
      restore_best_epoch=not args.keep_last_epoch,
      gradcam_layer=args.gradcam_layer,
      min_accuracy=args.min_accuracy, min_auc=args.min_auc,
      min_recall=args.min_recall)
  tasks = image_layouts.TASKS if args.task == "both" else (args.task,)
  for task in tasks:
    try:
      runner.run(args.data, task, args.output, settings,
                 runner=args.runner, beam_mode=args.beam_mode,
                 eval_percent=args.eval_percent,
                 enable_cache=not args.no_cache, cross_data=args.cross_data)
    except Exception as e:  # pylint: disable=broad-except
      # The runner has logged the traceback; end with what a person needs.
      print("\n".join(["", "=" * 72, f"The {task} pipeline run failed:",
                       str(e), "=" * 72]), file=sys.stderr)
      _print_summary(args.output, task)
      return 1
  print("=" * 72)
  found = [_print_summary(args.output, task) for task in tasks]
  print("=" * 72)
  return 0 if all(found) else 1


def _models(args) -> int:
  print(f"{'model':<14} {'task':<11} {'total':>12} {'trainable':>12}")
  for name in models.MODELS:
    counts = models.parameter_counts(
        models.build_model(name, args.task, args.image_size))
    print(f"{name:<14} {args.task:<11} {counts['total']:>12,} "
          f"{counts['trainable']:>12,}")
  print(f"(image size {args.image_size} px; transfer bases frozen)")
  return 0


def _summary(args) -> int:
  return 0 if _print_summary(args.output, args.task) is not None else 1


def _serve(args) -> int:
  absl_logging.set_verbosity(absl_logging.INFO)  # what loads, and why not
  try:
    handle = serving_server.start_server(
        args.model_base, host=args.host, port=args.port,
        rest_port=args.rest_port or None, poll_seconds=args.poll_seconds,
        max_workers=args.max_workers,
        max_message_bytes=args.max_message_bytes, tls_cert=args.tls_cert,
        tls_key=args.tls_key)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  # SIGTERM (docker stop, Kubernetes) ends it like Ctrl-C.
  previous = signal.signal(signal.SIGTERM,
                           lambda *_: handle.grpc_server.stop(0))
  try:
    handle.wait()
  except KeyboardInterrupt:
    pass
  finally:
    signal.signal(signal.SIGTERM, previous)
    handle.stop()
  return 0


def _class_name(outputs, class_id: int) -> str:
  """The first image's class name."""
  if "class_name" in outputs:
    return outputs["class_name"][0].decode("utf-8")
  # gradcam answers no names: the class count tells the task.
  for names in image_layouts.CLASS_NAMES.values():
    if len(names) == outputs["probabilities"].shape[-1]:
      return names[class_id]
  return str(class_id)


def _predict(args) -> int:
  with serving_client.Client(args.server, timeout=args.timeout) as client:
    return _predict_each(client, args)


def _predict_each(client, args) -> int:
  """One line per image; a bad file is reported and skipped."""
  if args.gradcam:
    os.makedirs(args.gradcam, exist_ok=True)
  failed = False
  for path in args.images:
    try:
      with open(path, "rb") as f:
        image = f.read()
    except OSError as e:
      print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
      failed = True
      continue
    try:
      if args.gradcam:
        outputs = client.gradcam(args.model, [image], version=args.version,
                                 method=args.gradcam_method)
      else:
        outputs = client.predict(args.model, [image], version=args.version)
    except serving_client.ClientError as e:
      if e.code == grpc.StatusCode.INVALID_ARGUMENT:
        # This image (e.g. not a JPEG/PNG), not the server: go on.
        print(f"{path}: rejected by the server: {e.details}",
              file=sys.stderr)
        failed = True
        continue
      print(f"error: {e}", file=sys.stderr)
      return 1
    class_id = int(outputs["class_id"][0])
    line = (f"{path}\t{_class_name(outputs, class_id)}\t"
            f"{float(outputs['probabilities'][0, class_id]):.4f}")
    if args.gradcam:
      overlay = os.path.join(
          args.gradcam, os.path.splitext(os.path.basename(path))[0]
          + "_gradcam.png")
      with open(overlay, "wb") as f:
        f.write(outputs["overlay_png"][0])
      line += f"\t{overlay}"
    print(line, flush=True)
  return 1 if failed else 0


def _model_list(text: str):
  try:
    return models.check_model_names(
        n.strip() for n in text.split(",") if n.strip())
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from e


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="cxr", description="Chest X-ray pneumonia pipeline on TFX.")
  sub = parser.add_subparsers(dest="command", required=True)

  synth = sub.add_parser("synth", help="write a synthetic chest X-ray set "
                         "in the Kaggle binary layout")
  synth.add_argument("out_dir")
  synth.add_argument("--n", type=int, default=300, help="number of images")
  synth.add_argument("--size", type=int, default=256, help="image side, px")
  synth.add_argument("--seed", type=int, default=0)
  synth.set_defaults(func=_synth)

  defaults = pipeline_lib.TrainingSettings()
  run = sub.add_parser("run", help="run the pipeline on a data folder")
  run.add_argument("--data", required=True,
                   help="data set folder (Kaggle binary or 3-class layout)")
  run.add_argument("--cross-data", default=None,
                   help="a second data set (either layout) every model is "
                   "also evaluated on, labels mapped to the task (its test "
                   "split; the thesis's cross-data-set accuracy)")
  run.add_argument("--task", required=True,
                   choices=image_layouts.TASKS + ("both",),
                   help="both: the binary and the 3-class pipelines")
  run.add_argument("--output", required=True,
                   help="output folder: artifacts, metadata, serving/")
  run.add_argument("--models", type=_model_list,
                   default=",".join(defaults.models),
                   help="comma list of models to train, each in its own "
                   f"Trainer/Evaluator/Pusher branch (default: all of "
                   f"{','.join(models.MODELS)})")
  run.add_argument("--weights", default=defaults.weights,
                   help="transfer models' base weights: imagenet (Keras's "
                   "download and cache under KERAS_HOME), none, or a path "
                   "to a weights file (local or gs://)")
  run.add_argument("--epochs", type=int, default=defaults.epochs)
  run.add_argument("--image-size", type=int, default=defaults.image_size)
  run.add_argument("--batch-size", type=int, default=defaults.batch_size)
  run.add_argument("--learning-rate", type=float,
                   default=defaults.learning_rate,
                   help="RMSprop's (default %(default)g, the thesis's); "
                   "cnn_aug at 224 px learned far better at 2e-4 "
                   "(BENCHMARKS.md)")
  run.add_argument("--seed", type=int, default=defaults.seed)
  run.add_argument("--class-weight", choices=("none", "balanced"),
                   default=defaults.class_weight,
                   help="balanced: weight classes by n / (classes * n_c) of "
                   "the train split")
  run.add_argument("--fine-tune-layers", type=int,
                   default=defaults.fine_tune_layers,
                   help="transfer models: after the frozen phase, train the "
                   "top N base layers at a tenth of the learning rate")
  run.add_argument("--fine-tune-epochs", type=int,
                   default=defaults.fine_tune_epochs)
  run.add_argument("--mixed-precision", choices=("", "float16", "bfloat16"),
                   default=defaults.mixed_precision,
                   help="compute dtype; the output layer stays float32")
  run.add_argument("--xla", action="store_true", help="compile with XLA")
  run.add_argument("--keep-last-epoch", action="store_true",
                   help="export the last epoch's weights instead of the "
                   "epoch with the lowest validation loss")
  run.add_argument("--gradcam-layer", default=defaults.gradcam_layer,
                   help="layer the gradcam signature explains (default: "
                   "each model's last convolutional feature map)")
  run.add_argument("--min-accuracy", type=float, default=defaults.min_accuracy,
                   help="blessing floor on test accuracy")
  run.add_argument("--min-auc", type=float, default=defaults.min_auc,
                   help="blessing floor on test AUC (binary task)")
  run.add_argument("--min-recall", type=float, default=defaults.min_recall,
                   help="blessing floor on test sensitivity (binary task)")
  run.add_argument("--eval-percent", type=int, default=10,
                   help="percent of train patients held out for validation")
  run.add_argument("--runner", choices=runner.RUNNERS, default="beam")
  run.add_argument("--beam-mode", choices=runner.BEAM_MODES,
                   default="in_memory",
                   help="Beam DirectRunner mode; multi_processing pays off "
                   "on large data sets only")
  run.add_argument("--no-cache", action="store_true",
                   help="re-run every component even if its inputs are "
                   "unchanged")
  run.set_defaults(func=_run)

  zoo = sub.add_parser("models", help="list the models with their "
                       "parameter counts")
  zoo.add_argument("--task", choices=image_layouts.TASKS, default="binary")
  zoo.add_argument("--image-size", type=int, default=defaults.image_size)
  zoo.set_defaults(func=_models)

  summ = sub.add_parser("summary", help="print the latest run's summary")
  summ.add_argument("--output", required=True)
  summ.add_argument("--task", required=True, choices=image_layouts.TASKS)
  summ.set_defaults(func=_summary)

  serve = sub.add_parser("serve", help="serve the pushed models over TF "
                         "Serving's gRPC (and REST) API, without TF Serving")
  serve.add_argument("--model-base", required=True,
                     help="BASE/<model>/<version>/saved_model.pb, e.g. "
                     "OUT/serving; polled for new versions")
  serve.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (0.0.0.0: every interface)")
  serve.add_argument("--port", type=int, default=8500, help="gRPC port")
  serve.add_argument("--rest-port", type=int, default=0,
                     help="REST port, e.g. 8501 (default 0: no REST)")
  serve.add_argument("--tls-cert", help="PEM certificate: serve over TLS")
  serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
  serve.add_argument("--poll-seconds", type=float, default=1.0,
                     help="how often to look for new model versions")
  serve.add_argument("--max-workers", type=int, default=8,
                     help="requests handled at once")
  serve.add_argument("--max-message-bytes", type=int,
                     default=serving_server.DEFAULT_MAX_MESSAGE_BYTES,
                     help="largest request accepted (default: TF Serving's "
                     "2 GiB); larger ones get RESOURCE_EXHAUSTED")
  serve.set_defaults(func=_serve)

  predict = sub.add_parser("predict", help="classify images with a served "
                           "model (cxr serve or TF Serving)")
  predict.add_argument("images", nargs="+", metavar="IMAGE",
                       help="JPEG or PNG files")
  predict.add_argument("--server", default="localhost:8500",
                       help="gRPC address HOST:PORT")
  predict.add_argument("--model", required=True, help="model name, e.g. cnn")
  predict.add_argument("--version", type=int,
                       help="model version (default: the latest)")
  predict.add_argument("--gradcam", metavar="OUT_DIR",
                       help="also write OUT_DIR/<image>_gradcam.png, the "
                       "Grad-CAM heat map over the image")
  # No default here: the signature's own (hirescam) applies, and models
  # exported before the method input existed still answer.
  predict.add_argument("--gradcam-method", choices=gradcam.METHODS,
                       help="hirescam (the signature's default; keeps the "
                       "gradient per location) or gradcam (the thesis's; "
                       "see BENCHMARKS.md)")
  predict.add_argument("--timeout", type=float, default=30.0,
                       help="seconds per request")
  predict.set_defaults(func=_predict)

  report.register(sub)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
