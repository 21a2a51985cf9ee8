"""Shared pytest set-up for tfvae's tf.test.TestCase suites."""
import os

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf.test.TestCase.get_temp_dir reads absl flags, which pytest never parses.
flags.FLAGS.mark_as_parsed()
