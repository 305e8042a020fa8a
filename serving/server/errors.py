"""Failed requests, with the gRPC status codes TF Serving gives them.

NOT_FOUND: unknown model or version. FAILED_PRECONDITION: unknown
signature. INVALID_ARGUMENT: wrong inputs, dtypes, shapes, images the model
cannot decode. RESOURCE_EXHAUSTED: a request above the message size limit.
INTERNAL: anything unexpected (the servicers log it).
"""

import re

import grpc
import tensorflow as tf

Code = grpc.StatusCode
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A failed request, with the gRPC status code TF Serving gives it."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def from_op_error(error: tf.errors.OpError) -> ServingError:
  """An op's failure during a signature call, with the op's own code."""
  return ServingError(_CODES.get(error.error_code, Code.UNKNOWN),
                      op_error_message(error))


def op_error_message(error: tf.errors.OpError) -> str:
  """The op's own message, without eager's "Graph execution error" preamble."""
  lines = [line for line in error.message.splitlines() if line.strip()
           and not re.match(r"( {2}|Graph execution error|Detected at node|"
                            r"<stack traces unavailable>)", line)]
  return re.sub(r"\s*\[Op:[^\]]*\]", "", "\n".join(lines)) or error.message
