"""The `cxr` subcommands, one module each.

Each module has `register(subparsers)`, which adds its parser from the
settings in schema/ and imports nothing heavy, and `main(args)`, which
imports what the command needs when it runs: `cxr predict` loads no TFX,
TFMA or Beam, and `cxr --help` loads no TensorFlow.
"""
