"""Errors that tfvae reports to users as one clear line."""


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
