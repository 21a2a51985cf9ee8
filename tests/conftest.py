"""Shared pytest set-up for tfvae's tf.test.TestCase suites."""
import os

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf.test.TestCase.get_temp_dir reads absl flags, which pytest never parses.
flags.FLAGS.mark_as_parsed()


def pytest_collection_modifyitems(items):
  # tf.test.TestCase inherits a deprecated `test_session` context manager that
  # pytest would collect and report as skipped; it is not a test.
  items[:] = [item for item in items if item.name != "test_session"]
