"""Errors that tfvae reports to users as one clear line."""
import re

# What TensorFlow wraps an eager op's error message in.
_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[A-Za-z0-9_]+\]$")


class TfvaeError(Exception):
  """A problem with the user's input, files or flags.

  Command-line programs print the message as a single line and exit with a
  non-zero status instead of showing a traceback. The message names the file,
  flag or tensor at fault.
  """


class DataError(TfvaeError):
  """A data set could not be found or its files are malformed."""


class RunDirError(TfvaeError):
  """A run directory is missing, damaged or does not fit the requested run."""


class NonFiniteLossError(TfvaeError):
  """Training produced a NaN or infinite loss."""


def op_message(error):
  """The first line of a TensorFlow error's message, without the wrapping.

  An eager op's error reads "{{function_node __wrapped__SaveV2_...}} PATH;
  File too large [Op:SaveV2]"; users get "PATH; File too large".

  Args:
    error: An exception (any; only TensorFlow's carry the wrapping).

  Returns:
    A string without newlines.
  """
  text = (getattr(error, "message", None) or str(error)).strip()
  line = text.splitlines()[0] if text else ""
  line = _OP_SUFFIX.sub("", _FUNCTION_NODE.sub("", line))
  return line or type(error).__name__
