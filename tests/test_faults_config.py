"""Faults of issue 18 in configs, flags, resumes, export caps and output
paths: each gets one line and a non-zero exit, before anything is created."""
import contextlib
import functools
import json
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import kinds
from tfvae import launch
from tfvae import runs
from tfvae import trained
from tfvae.export import signature_functions
from tests import util


def _write_config(directory, **changes):
  """Writes a default config.json with `changes` into `directory`."""
  d = config_lib.Config(image_shape=(28, 28, 1)).to_dict()
  d.update(changes)
  path = os.path.join(directory, "config.json")
  with open(path, "w") as f:
    json.dump(d, f)
  return path


class HandEditedConfigTest(parameterized.TestCase):

  @parameterized.parameters(
      ("latent_dim", "2", 'latent_dim: expected an integer, found "2"'),
      ("batch_size", None, "batch_size: expected an integer, found null"),
      ("learning_rate", "fast",
       'learning_rate: expected a number, found "fast"'),
      ("seed", "abc", 'seed: expected an integer, found "abc"'),
      ("hidden_sizes", "512",
       'hidden_sizes: expected a list of integers, found "512"'),
      ("hidden_sizes", [512.5],
       "hidden_sizes: expected a list of integers, found [512.5]"),
      ("latent_dim", 2.5, "latent_dim: expected an integer, found 2.5"),
      ("jit", "yes", 'jit: expected true or false, found "yes"'),
      ("image_shape", [28, 28],
       "image_shape: expected a list of 3 integers or null, found [28, 28]"),
      ("data_dir", 7, "data_dir: expected a string or null, found 7"),
      ("model", "gan", "model='gan': choose one of vae, iwae"),
      ("activation", "step", "activation: unknown activation 'step'"),
      ("learning_rate", float("inf"), "learning_rate=inf: must be finite"),
      ("beta", float("nan"), "beta=nan: must be finite"),
      ("seed", 2**64, "seed=18446744073709551616: must fit in a signed "
       "64-bit integer"),
      ("log_every_steps", 0, "log_every_steps=0: must be positive"),
  )
  def test_load_names_the_file_the_field_and_the_expected_type(
      self, field, value, message):
    path = _write_config(self.create_tempdir().full_path, **{field: value})
    with self.assertRaises(errors.RunDirError) as raised:
      config_lib.load(path)
    text = str(raised.exception)
    self.assertStartsWith(text, f"{path}: {message}")
    self.assertNotIn("\n", text)

  def test_a_good_config_loads_with_its_types(self):
    path = _write_config(self.create_tempdir().full_path, hidden_sizes=[8, 4],
                         learning_rate=1)
    config = config_lib.load(path)
    self.assertEqual(config.hidden_sizes, (8, 4))
    self.assertEqual(config.image_shape, (28, 28, 1))
    self.assertIsInstance(config.learning_rate, float)

  def test_from_dict_refuses_a_string_for_a_list(self):
    # Before: "512" became the widths (5, 1, 2).
    with self.assertRaisesRegex(config_lib.FieldTypeError, "^hidden_sizes:"):
      config_lib.Config.from_dict({"hidden_sizes": "512"})

  def test_save_writes_standard_json(self):
    path = os.path.join(self.create_tempdir().full_path, "config.json")
    with self.assertRaises(ValueError):
      config_lib.save(config_lib.Config(learning_rate=float("inf")), path)
    self.assertFalse(os.path.exists(path))


class FlagValuesTest(parameterized.TestCase):

  @parameterized.parameters(
      ("log_every_steps", 0, "--log_every_steps=0: must be positive"),
      ("log_every_steps", -5, "--log_every_steps=-5: must be positive"),
      ("cpu_devices", -1, "--cpu_devices=-1: must not be negative"),
      ("seed", 2**63, "--seed=9223372036854775808: must fit in a signed "
       "64-bit integer"),
      ("learning_rate", float("inf"), "--learning_rate=inf: must be finite"),
      ("gaussian_scale", float("nan"), "--gaussian_scale=nan: must be "
       "finite"),
  )
  def test_validate_refuses(self, field, value, message):
    with self.assertRaises(errors.TfvaeError) as raised:
      config_lib.Config(**{field: value}).validate()
    self.assertEqual(str(raised.exception), message)

  def test_the_int64_extremes_are_valid_seeds(self):
    config_lib.Config(seed=2**63 - 1).validate()
    config_lib.Config(seed=-2**63).validate()


class EffectiveValuesTest(absltest.TestCase):

  def test_an_explicit_default_activation_is_no_difference(self):
    saved = config_lib.Config(network="mlp", activation=None)
    self.assertEqual(saved.replace(activation="tanh").differences(saved), [])
    self.assertEqual(saved.replace(activation="relu").differences(saved),
                     ["activation"])
    conv = saved.replace(network="conv")
    self.assertEqual(conv.replace(activation="relu").differences(conv), [])


def _tiny_config(**changes):
  return config_lib.Config(hidden_sizes=(8,), batch_size=32, epochs=1,
                           save_every_steps=10**6,
                           log_every_steps=10**6).replace(**changes)


def _slice(first, num_train=64, num_test=16):
  """Real Fashion-MNIST images [first, first + num_train) as a Dataset."""
  full = util.fashion_mnist()
  return data.Dataset(
      name="fashion_mnist",
      train=data.Split(full.train.images[first:first + num_train],
                       full.train.labels[first:first + num_train]),
      test=data.Split(full.test.images[:num_test],
                      full.test.labels[:num_test]),
      class_names=full.class_names, source=f"Fashion-MNIST from {first}")


def _one_line_error(test, args):
  """Runs `python -m args`; asserts a non-zero exit and one error line."""
  result = util.run_tool(*args)
  test.assertNotEqual(result.returncode, 0, result.stderr)
  test.assertNotIn("Traceback", result.stderr)
  lines = [l for l in result.stderr.splitlines() if "error" in l.lower()]
  test.assertLen(lines, 1, result.stderr)
  return lines[0]


class LaunchRefusesBeforeCreatingTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.run_dir = os.path.join(self.create_tempdir().full_path, "run")

  @parameterized.parameters(
      ({"log_every_steps": 0}, "--log_every_steps=0: must be positive"),
      ({"learning_rate": float("inf")}, "--learning_rate=inf: must be finite"),
      ({"seed": 2**64}, "--seed=18446744073709551616: must fit"),
      ({"data_dir": "/no/such/tfvae/data"},
       "--data_dir=/no/such/tfvae/data: no such directory"),
  )
  def test_bad_config(self, changes, message):
    with self.assertRaises(errors.TfvaeError) as raised:
      launch.run(_tiny_config(**changes), self.run_dir)
    self.assertStartsWith(str(raised.exception), message)
    self.assertFalse(os.path.exists(self.run_dir))

  def test_empty_run_dir(self):
    with self.assertRaisesRegex(errors.RunDirError, "^--run_dir='': must"):
      launch.run(_tiny_config(), "", dataset=_slice(0))

  def test_run_dir_naming_a_file(self):
    path = self.create_tempfile(content="mine").full_path
    with self.assertRaisesRegex(errors.RunDirError,
                                f"^--run_dir={path}: .* is not a directory"):
      launch.run(_tiny_config(), path, dataset=_slice(0))
    with open(path) as f:
      self.assertEqual(f.read(), "mine")

  def test_empty_test_split(self):
    empty = _slice(0, num_test=0)
    with self.assertRaisesRegex(errors.DataError,
                                "the test split holds no images"):
      launch.run(_tiny_config(), self.run_dir, dataset=empty)
    self.assertFalse(os.path.exists(self.run_dir))


@functools.lru_cache(maxsize=None)
def _trained_run():
  """A run of one epoch on `_slice(0)`, trained once for the whole module."""
  run_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "trained")
  launch.run(_tiny_config(), run_dir, dataset=_slice(0))
  return run_dir


class ResumeTest(absltest.TestCase):
  """Resuming a run on other data, and with a flag equal to its default."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = _trained_run()

  def test_other_data_is_refused_unless_allowed(self):
    record = os.path.join(self.run_dir, launch.DATA_RECORD)
    with open(record) as f:
      before = f.read()
    self.assertEqual(json.loads(before)["sha256"],
                     data.fingerprint(_slice(0)))
    other = _slice(64)
    with self.assertRaises(errors.RunDirError) as raised:
      launch.run(_tiny_config(), self.run_dir, explicit=set(), dataset=other)
    self.assertIn("was trained on other data", str(raised.exception))
    self.assertIn("--allow_data_change", str(raised.exception))
    with open(record) as f:
      self.assertEqual(f.read(), before)
    # The same data (its same arrays) resumes.
    launch.run(_tiny_config(), self.run_dir, explicit=set(),
               dataset=_slice(0))
    moved = os.path.join(self.create_tempdir().full_path, "run")
    os.rename(self.run_dir, moved)
    try:
      launch.run(_tiny_config(), moved, explicit=set(), dataset=other,
                 allow_data_change=True)
      with open(os.path.join(moved, launch.DATA_RECORD)) as f:
        self.assertEqual(json.load(f)["sha256"], data.fingerprint(other))
    finally:
      os.rename(moved, self.run_dir)
      with open(record, "w") as f:
        f.write(before)

  def test_an_explicit_effective_default_is_no_change(self):
    saved = config_lib.load(runs.config_path(self.run_dir))
    self.assertIsNone(saved.activation)
    config = launch.resolve_config(
        self.run_dir, _tiny_config(activation="tanh"), explicit={"activation"})
    self.assertIsNone(config.activation)
    with self.assertRaisesRegex(errors.RunDirError, "--activation=relu"):
      launch.resolve_config(self.run_dir, _tiny_config(activation="relu"),
                            explicit={"activation"})


class ExportCapTest(tf.test.TestCase):
  """The caps hold in a SavedModel, where no tfvae code runs."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    model = kinds.build_model(_tiny_config(image_shape=(28, 28, 1)))
    module = signature_functions.export_module(model)
    cls.path = os.path.join(tf.compat.v1.test.get_temp_dir(), "capped")
    tf.saved_model.save(module, cls.path,
                        signatures=signature_functions.signatures(module))
    cls.loaded = tf.saved_model.load(cls.path)

  def test_log_importance_weights(self):
    cap = signature_functions.MAX_SAMPLES_PER_CALL
    x = tf.zeros([2, 28, 28, 1])
    call = self.loaded.signatures["log_importance_weights"]
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError,
        f"num_samples \\* batch exceeds MAX_SAMPLES_PER_CALL = {cap}"):
      call(x=x, seed=tf.constant(1, tf.int64),
           num_samples=tf.constant(2 * 10**9, tf.int32))
    with self.assertRaises(tf.errors.InvalidArgumentError):
      call(x=x, seed=tf.constant(1, tf.int64),
           num_samples=tf.constant(cap // 2 + 1, tf.int32))
    weights = call(x=x, seed=tf.constant(1, tf.int64),
                   num_samples=tf.constant(3, tf.int32))["log_weights"]
    self.assertEqual(weights.shape, [3, 2])

  def test_generate(self):
    cap = signature_functions.MAX_SAMPLES_PER_CALL
    generate = self.loaded.signatures["generate"]
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError,
        f"generate: the batch of seeds exceeds MAX_SAMPLES_PER_CALL = {cap}"):
      generate(seed=tf.range(cap + 1, dtype=tf.int64))
    images = generate(seed=tf.range(4, dtype=tf.int64))["images"]
    self.assertEqual(images.shape, [4, 28, 28, 1])


class ProgramsTest(parameterized.TestCase):
  """The same faults through the programs: one line, non-zero exit."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = _trained_run()

  def _bad_run(self, **changes):
    """A copy of the trained run with config.json hand-edited."""
    run_dir = os.path.join(self.create_tempdir().full_path, "run")
    os.makedirs(run_dir)
    os.symlink(os.path.join(self.run_dir, runs.CKPT),
               os.path.join(run_dir, runs.CKPT))
    with open(runs.config_path(self.run_dir)) as f:
      d = json.load(f)
    d.update(changes)
    with open(runs.config_path(run_dir), "w") as f:
      json.dump(d, f)
    return run_dir

  def test_every_reader_of_a_run_and_train_flags(self):
    # Each type fault is tested through config.load above, and each flag
    # fault through Config.validate and launch.run: the programs read runs
    # and flags through them. Every program here starts TensorFlow, so they
    # run side by side.
    run_dir = self._bad_run(hidden_sizes="8")
    where = f"{runs.config_path(run_dir)}: hidden_sizes: expected"
    export_dir = os.path.join(self.create_tempdir().full_path, "exports")
    png = os.path.join(self.create_tempdir().full_path, "s.png")
    new_run = os.path.join(self.create_tempdir().full_path, "run")
    programs = [
        (("tools.export", f"--run_dir={run_dir}",
          f"--export_dir={export_dir}"), where),
        (("tools.generate", f"--model={run_dir}", f"--out={png}"), where),
        # Was a ZeroDivisionError after the run directory was created.
        (("tools.train", f"--run_dir={new_run}", "--log_every_steps=0"),
         "--log_every_steps=0: must be positive"),
    ]
    started = [subprocess.Popen(
        [sys.executable, "-m", *args], cwd=util.REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for args, _ in programs]
    for process, (args, needle) in zip(started, programs):
      _, stderr = process.communicate(timeout=300)
      self.assertNotEqual(process.returncode, 0, args)
      self.assertNotIn("Traceback", stderr)
      lines = [l for l in stderr.splitlines() if "error" in l.lower()]
      self.assertLen(lines, 1, stderr)
      self.assertIn(needle, lines[0], args)
    for path in (export_dir, png, new_run):
      self.assertFalse(os.path.exists(path), path)
    # tfvae-train resumes through launch.run; evaluate, plot and denoise
    # open runs through open_model.
    with self.assertRaisesRegex(errors.RunDirError, f"^{where}"):
      launch.run(_tiny_config(), run_dir, explicit=set(), dataset=_slice(0))
    with self.assertRaisesRegex(errors.RunDirError, f"^{where}"):
      trained.open_model(run_dir)

  def test_outputs_in_a_place_that_cannot_be_written(self):
    afile = self.create_tempfile().full_path
    png = os.path.join(self.create_tempdir().full_path, "s.png")
    cases = [
        (("tools.export", f"--run_dir={self.run_dir}",
          f"--export_dir={afile}/exports"), f"{afile} is not a directory"),
        (("tools.export", f"--run_dir={self.run_dir}", "--export_dir="),
         "--export_dir='': must name a directory"),
        (("tools.generate", f"--model={self.run_dir}",
          f"--out={afile}/x/s.png"), f"{afile} is not a directory"),
        (("tools.generate", f"--model={self.run_dir}", f"--out={png}",
          f"--out_npy={afile}/s.npy"), f"{afile} is not a directory"),
    ]
    with self._read_only_dir() as read_only:
      cases += [
          (("tools.export", f"--run_dir={self.run_dir}",
            f"--export_dir={read_only}/exports"),
           f"cannot write in {read_only}"),
          (("tools.generate", f"--model={self.run_dir}",
            f"--out={read_only}/s.png"), f"cannot write in {read_only}"),
      ]
      for args, needle in cases:
        line = _one_line_error(self, args)
        self.assertIn(needle, line, args)
      self.assertEqual(os.listdir(read_only), [])
    self.assertFalse(os.path.exists(png))

  @contextlib.contextmanager
  def _read_only_dir(self):
    """A directory nobody may write in: chmod, or for root (whom chmod does
    not stop) a read-only tmpfs."""
    directory = self.create_tempdir().full_path
    if os.geteuid() != 0:
      os.chmod(directory, 0o555)
      try:
        yield directory
      finally:
        os.chmod(directory, 0o755)
      return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", directory],
        capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
      self.skipTest("running as root, where chmod does not stop writes, and "
                    f"a read-only tmpfs cannot be mounted: {mounted.stderr}")
    try:
      yield directory
    finally:
      subprocess.run(["umount", directory], check=True)


if __name__ == "__main__":
  absltest.main()
