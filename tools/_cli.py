"""Shared entry-point wrapper for tfvae's absl programs."""
import os
import sys

from absl import app
from absl import logging

from tfvae import errors



def run(main):
  """Runs an absl `main`, turning `TfvaeError`s into one-line errors.

  Args:
    main: A function `main(argv)` as taken by `absl.app.run`.
  """

  def guarded_main(argv):
    try:
      return main(argv)
    except (errors.TfvaeError, app.UsageError) as e:
      prog = os.path.basename(sys.argv[0]) or "tfvae"
      message = " ".join(str(e).split("\n"))
      if isinstance(e, app.UsageError):
        message += " (see --help)"
      sys.stderr.write(f"{prog}: error: {message}\n")
      sys.stderr.flush()
      # os._exit would skip absl's flush; SystemExit keeps it orderly.
      raise SystemExit(1)

  logging.set_verbosity(logging.INFO)
  app.run(guarded_main)
