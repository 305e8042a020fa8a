"""`cxr synth OUT_DIR`: a synthetic chest X-ray set in the Kaggle binary
layout, with its lesion boxes."""

import os


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "synth", help="write a synthetic chest X-ray set in the Kaggle binary "
      "layout")
  parser.add_argument("out_dir")
  parser.add_argument("--n", type=int, default=300, help="number of images")
  parser.add_argument("--size", type=int, default=256, help="image side, px")
  parser.add_argument("--seed", type=int, default=0)
  parser.set_defaults(func=main)


def main(args) -> int:
  from pipeline import synthetic  # pylint: disable=g-import-not-at-top
  counts = synthetic.generate(args.out_dir, n=args.n, size=args.size,
                              seed=args.seed)
  total = sum(counts.values())
  print(f"wrote {total} images to {args.out_dir}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
  print(f"lesion boxes: {os.path.join(args.out_dir, synthetic.LESIONS_FILE)}")
  return 0
