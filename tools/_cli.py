"""Shared entry-point wrapper for tfvae's absl programs."""
import os
import sys

from absl import app
from absl import logging

from tfvae import errors


def _start_tensorflow_quietly():
  """Imports TensorFlow with its C++ start-up chatter sent to /dev/null.

  TensorFlow's native libraries print CUDA probes and CPU notes to file
  descriptor 2 before any log level applies, burying the one-line messages
  these programs print. Python errors raised here still reach the user.
  Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
  """
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_probability  # pylint: disable=g-import-not-at-top,unused-import
    tf.config.list_physical_devices()
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def run(main):
  """Runs an absl `main`, turning `TfvaeError`s into one-line errors.

  Args:
    main: A function `main(argv)` as taken by `absl.app.run`.
  """

  def guarded_main(argv):
    try:
      _start_tensorflow_quietly()
      return main(argv)
    except errors.TfvaeError as e:
      prog = os.path.basename(sys.argv[0]) or "tfvae"
      message = " ".join(str(e).split("\n"))
      sys.stderr.write(f"{prog}: error: {message}\n")
      sys.stderr.flush()
      # os._exit would skip absl's flush; SystemExit keeps it orderly.
      raise SystemExit(1)

  logging.set_verbosity(logging.INFO)
  app.run(guarded_main)
