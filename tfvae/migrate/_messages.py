"""Turning exceptions from TensorFlow and protobuf into one-line messages."""


def first_line(error):
  """The first line of `error`'s message, or its type's name if it has none.

  TensorFlow's OpErrors carry the failing op's whole traceback in their
  message; users get the line that says what went wrong.

  Args:
    error: An exception.

  Returns:
    A string without newlines.
  """
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0]
