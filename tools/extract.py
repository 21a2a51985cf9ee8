"""Writes a checkpoint's variables to a .npz, keyed by variable name.

  tfvae-extract PATH --out=weights.npz [--include_slots] [--include=RE]
      [--exclude=RE]

Model weights only unless --include_slots. The file is written under a
temporary name (`.tmp-extract-PID-*.npz` beside it) and renamed into place,
so it is complete or absent; each start removes the temporaries that dead
extractions left there.
"""
import os
import re

from absl import app
from absl import flags
from absl import logging
import numpy as np

from tfvae import errors
from tfvae import files
from tools import _cli

# Executed on first use, so that --help starts no TensorFlow.
migrate = _cli.lazy_import("tfvae.migrate")

flags.DEFINE_string("out", None, "The .npz file to write (required).")
flags.DEFINE_bool("include_slots", False,
                  "Also write optimizer slots and bookkeeping variables.")
flags.DEFINE_multi_string(
    "include", [], "Keep only variables whose name matches one of these "
    "regexes (re.search; repeatable or comma-separated).")
flags.DEFINE_multi_string(
    "exclude", [], "Drop variables whose name matches one of these regexes "
    "(repeatable or comma-separated).")
FLAGS = flags.FLAGS


def _patterns(values, flag):
  patterns = []
  for value in values:
    for text in value.split(","):
      if not text:
        continue
      try:
        patterns.append(re.compile(text))
      except re.error as e:
        raise errors.TfvaeError(f"--{flag}={text} is not a regex: {e}")
  return patterns


def select(report, include_slots, include, exclude):
  """Names of the variables to extract."""
  names = []
  for v in report.variables:
    if v.name == "_CHECKPOINTABLE_OBJECT_GRAPH":
      continue
    if v.kind != migrate.reader.WEIGHT and not include_slots:
      continue
    if include and not any(p.search(v.name) for p in include):
      continue
    if any(p.search(v.name) for p in exclude):
      continue
    names.append(v.name)
  return names


# The owner name of tfvae-extract's temporaries (see `files.atomic_open`).
_TMP_OWNER = "extract"


def write_npz(path, arrays):
  """Writes `arrays` to `path` atomically (temp file + rename)."""
  with files.atomic_open(path, owner=_TMP_OWNER) as f:
    np.savez(f, **arrays)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(
        "Expected exactly one argument, the checkpoint PATH; got "
        f"{argv[1:]}")
  if not FLAGS.out:
    raise app.UsageError("--out is required")
  for path in files.remove_dead_temporaries(
      os.path.dirname(os.path.abspath(FLAGS.out)), _TMP_OWNER):
    logging.info("Removed %s, left by an extraction that did not finish",
                 path)
  report = migrate.reader.inspect(argv[1])
  names = select(report, FLAGS.include_slots,
                 _patterns(FLAGS.include, "include"),
                 _patterns(FLAGS.exclude, "exclude"))
  if not names:
    raise errors.TfvaeError(
        f"no variable of {report.source.prefix} passes the filters")
  arrays = migrate.reader.read_all(report.source, names)
  write_npz(FLAGS.out, arrays)
  logging.info("Wrote %d variables to %s", len(arrays), FLAGS.out)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
