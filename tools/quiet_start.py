"""Starts TensorFlow with its C++ start-up chatter sent to /dev/null.

Imported by every tfvae program before anything imports TensorFlow.
TensorFlow's native libraries print CUDA probes and CPU notes to file
descriptor 2 before any log level applies, burying the one-line messages the
programs print; later native messages below ERROR... and the failed CUDA probe
on machines without a GPU are hidden by TF_CPP_MIN_LOG_LEVEL=3 unless the user
set another level. Python errors still reach the user. Set
TF_CPP_MIN_LOG_LEVEL=0 to see everything.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _start_tensorflow_quietly():
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_probability  # pylint: disable=g-import-not-at-top,unused-import
    # Probes CUDA now, while its failure on GPU-less machines goes unseen;
    # listing physical devices leaves logical ones configurable.
    tf.config.list_physical_devices()
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


_start_tensorflow_quietly()
