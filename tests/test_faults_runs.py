"""Fault injection on run directories (GitHub issue 18, items 3-8).

Each test reproduces a fault the campaign found (a second trainer, a relative
--run_dir, a repaired state file, leftovers of killed writes, a torn
metrics.jsonl, a kill before the metrics append, a signal, a full or
read-only disk) and checks what is promised instead (README: "Reliability").
"""
import glob
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import tfvae
from tfvae import errors
from tfvae import export
from tfvae import launch
from tfvae import runs
from tfvae import training
from tests import util

# 256 training images at batch 32: 8 steps per epoch, one step per call, so
# that a run stopped at any step splits no call of the uninterrupted run.
_SMALL = dict(epochs=1, batch_size=32, hidden_sizes=(32,), latent_dim=2,
              save_every_steps=10**6, log_every_steps=10**6,
              steps_per_call=1)
_VARYING = ("examples_per_sec", "wall_time")


def _small_data():
  return util.small_fashion_mnist(num_train=256, num_test=64)


def _config(**overrides):
  return tfvae.Config(**{**_SMALL, **overrides})


def _train(run_dir, **overrides):
  return launch.run(_config(**overrides), run_dir, dataset=_small_data())


def _metrics(run_dir):
  with open(runs.metrics_path(run_dir)) as f:
    return [json.loads(line) for line in f]


def _steady(records):
  return [{k: v for k, v in r.items() if k not in _VARYING} for r in records]


def _weights(model):
  return [v.numpy() for v in model.trainable_variables]


def _steps(ckpt_dir):
  return sorted(int(re.search(r"ckpt-(\d+)\.index$", p).group(1))
                for p in glob.glob(os.path.join(ckpt_dir, "ckpt-*.index")))


class _Reference:
  """The uninterrupted 3-epoch run, trained once for the tests comparing
  with it."""
  run = None

  @classmethod
  def get(cls, tempdir):
    if cls.run is None:
      run_dir = os.path.join(tempdir, "reference")
      trainer, _ = _train(run_dir, epochs=3)
      cls.run = (_metrics(run_dir), _weights(trainer.model))
    return cls.run


class LockTest(tf.test.TestCase):

  def test_second_trainer_is_refused_naming_the_holder_pid(self):
    run_dir = self.create_tempdir().full_path
    holder = runs.lock_run_dir(run_dir)
    try:
      with self.assertRaisesRegex(errors.RunDirError,
                                  rf"in use.*pid {os.getpid()}\b"):
        _train(run_dir)
      self.assertFalse(os.path.exists(runs.config_path(run_dir)))
    finally:
      holder.close()
    _train(run_dir)  # Released with its file: the run now trains.
    self.assertEqual([r["epoch"] for r in _metrics(run_dir)], [1])

  def test_a_killed_holder_leaves_no_stale_lock(self):
    run_dir = self.create_tempdir().full_path
    code = ("import sys, time; from tfvae import runs; "
            "lock = runs.lock_run_dir(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, run_dir],
                            cwd=util.REPO, stdout=subprocess.PIPE, text=True)
    try:
      self.assertEqual(proc.stdout.readline().strip(), "locked")
      with self.assertRaisesRegex(errors.RunDirError, rf"pid {proc.pid}\b"):
        runs.lock_run_dir(run_dir)
    finally:
      proc.kill()
      proc.wait(timeout=30)
      proc.stdout.close()
    runs.lock_run_dir(run_dir).close()


class CheckpointStateTest(tf.test.TestCase):

  def test_relative_run_dir_resumes_without_repairs_and_keeps_n(self):
    parent = self.create_tempdir().full_path
    cwd = os.getcwd()
    os.chdir(parent)
    self.addCleanup(os.chdir, cwd)
    run_dir = os.path.join("runs", "relx")
    _train(run_dir, save_every_steps=2, keep_checkpoints=2)
    with self.assertNoLogs(level="WARNING"):
      _train(run_dir, epochs=2, save_every_steps=2, keep_checkpoints=2)
    ckpt_dir = runs.ckpt_dir(run_dir)
    self.assertEqual(glob.glob(os.path.join(ckpt_dir, "*.damaged-*")), [])
    self.assertEqual(_steps(ckpt_dir), [14, 16])

  def test_repaired_state_file_lets_old_checkpoints_rotate_away(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir, save_every_steps=2, keep_checkpoints=3)
    ckpt_dir = runs.ckpt_dir(run_dir)
    self.assertEqual(_steps(ckpt_dir), [4, 6, 8])
    with open(os.path.join(ckpt_dir, "checkpoint"), "w") as f:
      f.write("garbage {{{\n")
    _train(run_dir, epochs=3, save_every_steps=2, keep_checkpoints=3)
    self.assertEqual(_steps(ckpt_dir), [20, 22, 24])

  def test_restore_falls_back_when_the_chosen_checkpoint_rotates_away(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir, save_every_steps=4, keep_checkpoints=5)
    ckpt_dir = runs.ckpt_dir(run_dir)
    self.assertEqual(_steps(ckpt_dir), [4, 8])
    # A trainer's CheckpointManager deletes ckpt-8 after it was chosen
    # (verified) and before it is restored: between the two, the model is
    # built, and that is where the deletion is injected.
    build = runs.kinds.build_model
    deleted = []

    def build_then_rotate(config):
      if not deleted:
        for path in glob.glob(os.path.join(ckpt_dir, "ckpt-8.*")):
          os.remove(path)
          deleted.append(path)
      return build(config)

    runs.kinds.build_model = build_then_rotate
    try:
      _, model, step, chosen = runs.restore_checkpoint(run_dir)
    finally:
      runs.kinds.build_model = build
    self.assertNotEmpty(deleted)
    self.assertEqual(step, 4)
    self.assertEqual(chosen, os.path.join(ckpt_dir, "ckpt-4"))
    _, direct, _ = runs.restore_model(run_dir, chosen)
    for a, b in zip(_weights(model), _weights(direct)):
      np.testing.assert_array_equal(a, b)


class LeftoversTest(tf.test.TestCase):

  def test_own_temporary_files_are_removed_on_the_next_start(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir)
    ckpt_dir = runs.ckpt_dir(run_dir)
    leftovers = [
        os.path.join(ckpt_dir, "ckpt-12_temp", "part-00000-of-00001.index"),
        os.path.join(ckpt_dir, "checkpoint.tmp" + "0123456789abcdef" * 2),
        os.path.join(ckpt_dir, "ckpt-16.data-00000-of-00001"),
        os.path.join(ckpt_dir, ".tmp-a1b2c3d4"),
        os.path.join(run_dir, ".tmp-x_y1z2ab.json"),
        os.path.join(run_dir, ".tmp-0pqrstuv.jsonl"),
        os.path.join(run_dir, "pictures", ".tmp-abcdefgh.png"),
    ]
    # Not tfvae's names (or not where tfvae writes them): kept.
    others = [
        os.path.join(run_dir, "notes.tmp"),
        os.path.join(run_dir, ".tmp-mine"),
        os.path.join(ckpt_dir, "my_temp"),
        os.path.join(run_dir, "summaries", ".tmp-abcdefgh"),
    ]
    for path in leftovers + others:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        f.write("x")
    _train(run_dir)  # Nothing to train; the start cleans up.
    for path in leftovers:
      self.assertFalse(os.path.exists(path), path)
    self.assertFalse(os.path.exists(os.path.join(ckpt_dir, "ckpt-12_temp")))
    for path in others:
      self.assertTrue(os.path.exists(path), path)
    self.assertTrue(os.path.exists(os.path.join(ckpt_dir,
                                                "ckpt-8.data-00000-of-00001")))

  def test_a_refused_second_trainer_removes_nothing(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir)
    leftover = os.path.join(runs.ckpt_dir(run_dir), "ckpt-9_temp")
    os.makedirs(leftover)
    holder = runs.lock_run_dir(run_dir)
    try:
      with self.assertRaises(errors.RunDirError):
        _train(run_dir)
    finally:
      holder.close()
    self.assertTrue(os.path.isdir(leftover))


class MetricsRecordTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("torn", "lost")
  def test_epoch_record_equals_the_uninterrupted_runs(self, how):
    reference, _ = _Reference.get(self.get_temp_dir())
    run_dir = self.create_tempdir().full_path
    _train(run_dir, epochs=2)
    path = runs.metrics_path(run_dir)
    with open(path) as f:
      lines = f.readlines()
    if how == "torn":  # Killed while appending epoch 2's record.
      lines[-1] = lines[-1][:len(lines[-1]) // 2]
    else:  # Killed after epoch 2's checkpoint, before its record.
      lines = lines[:-1]
    with open(path, "w") as f:
      f.writelines(lines)
    _train(run_dir, epochs=3)
    records = _metrics(run_dir)
    self.assertEqual([r["epoch"] for r in records], [1, 2, 3])
    self.assertEqual(_steady(records), _steady(reference))

  def test_sigint_mid_epoch_saves_there_and_resume_equals_uninterrupted(self):
    reference, reference_weights = _Reference.get(self.get_temp_dir())
    run_dir = self.create_tempdir().full_path
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT,
                                                 signal.SIGTERM)}
    self.addCleanup(lambda: [signal.signal(s, h) for s, h in previous.items()])
    self.addCleanup(setattr, training, "_stop_signal", None)
    training.stop_on_signals()

    class SignalledAtStep11(training.Trainer):
      """Sends itself SIGINT when step 11 (epoch 2, 3 steps in) is done."""

      def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        runner = self.train_step.runner

        def signalling_runner(epoch_index, into_epoch):
          run_steps = runner(epoch_index, into_epoch)

          def run(num_steps):
            sums = run_steps(num_steps)
            if int(self.step) == 11:
              os.kill(os.getpid(), signal.SIGINT)
            return sums

          return run

        self.train_step.runner = signalling_runner

    config = _config(epochs=3).replace(image_shape=(28, 28, 1))
    trainer = launch.build_trainer(config, run_dir, _small_data(),
                                   tf.distribute.get_strategy(),
                                   trainer_class=SignalledAtStep11)
    runs.save_config(run_dir, config)
    with self.assertRaisesRegex(training.Interrupted,
                                r"stopped by SIGINT at step 11; newest "
                                r"checkpoint \S+ckpt-11\b") as caught:
      trainer.train()
    self.assertEqual(caught.exception.signum, signal.SIGINT)
    self.assertEqual(_steps(runs.ckpt_dir(run_dir)), [8, 11])
    self.assertEqual([r["epoch"] for r in _metrics(run_dir)], [1])
    training._stop_signal = None  # pylint: disable=protected-access
    trainer, _ = _train(run_dir, epochs=3)
    self.assertEqual(_steady(_metrics(run_dir)), _steady(reference))
    for a, b in zip(_weights(trainer.model), reference_weights):
      np.testing.assert_array_equal(a, b)


class ConfigWriteTest(tf.test.TestCase):

  def test_a_finished_run_does_not_rewrite_config_json(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir)
    before = os.stat(runs.config_path(run_dir))
    _train(run_dir)
    after = os.stat(runs.config_path(run_dir))
    self.assertEqual((before.st_ino, before.st_mtime_ns),
                     (after.st_ino, after.st_mtime_ns))


def _one_line(test, error):
  test.assertLen(str(error).splitlines(), 1)


class FullOrReadOnlyDiskTest(tf.test.TestCase):
  """Saves onto a full tmpfs or a read-only checkpoint directory."""

  def _mount_tmpfs(self, size):
    if os.geteuid() != 0:
      self.skipTest("mounting a tmpfs needs root; the chmod variant "
                    "(test_read_only_checkpoint_directory) runs without it")
    mount_point = self.create_tempdir().full_path
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                             "tmpfs", mount_point], capture_output=True,
                            text=True)
    if result.returncode:
      self.skipTest(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    self.addCleanup(subprocess.run, ["umount", "-l", mount_point],
                    check=False)
    return mount_point

  def _state(self, run_dir):
    """metrics.jsonl's bytes and the checkpoint the state file names."""
    with open(runs.metrics_path(run_dir), "rb") as f:
      metrics = f.read()
    return metrics, tf.train.latest_checkpoint(runs.ckpt_dir(run_dir))

  def test_disk_full_during_a_checkpoint_save(self):
    run_dir = os.path.join(self._mount_tmpfs("6m"), "run")
    _train(run_dir)
    before = self._state(run_dir)
    filler = os.path.join(os.path.dirname(run_dir), "filler")
    with open(filler, "wb", buffering=0) as f:
      try:
        while True:
          f.write(b"\0" * 4096)
      except OSError:
        pass
    os.truncate(filler, os.path.getsize(filler) - 64 * 1024)
    with self.assertRaisesRegex(
        errors.RunDirError,
        rf"cannot write {re.escape(run_dir)}/ckpt/ckpt-16: .*"
        r"(No space left on device|Resource exhausted|space)") as caught:
      _train(run_dir, epochs=2)
    _one_line(self, caught.exception)
    self.assertEqual(self._state(run_dir), before)
    self.assertIsNone(runs.verify_checkpoint(before[1]))
    os.remove(filler)
    _train(run_dir, epochs=2)
    self.assertEqual([r["epoch"] for r in _metrics(run_dir)], [1, 2])
    self.assertEqual(
        sorted(n for n in os.listdir(runs.ckpt_dir(run_dir))
               if "temp" in n or "tmp" in n), [])

  def test_disk_full_during_the_metrics_append(self):
    reference, _ = _Reference.get(self.get_temp_dir())
    run_dir = os.path.join(self._mount_tmpfs("6m"), "run")
    path = runs.metrics_path(run_dir)
    # The disk fills up after epoch 1's checkpoint and pictures, just
    # before its record is appended (a first record: a tmpfs has room in a
    # file's last page, which a later append could still use).
    filler = os.path.join(os.path.dirname(run_dir), "filler")
    append = training.run_outputs.append_metrics

    def fill_then_append(run_dir_, record):
      with open(filler, "wb", buffering=0) as f:
        try:
          while True:
            f.write(b"\0" * 512)
        except OSError:
          pass
      return append(run_dir_, record)

    training.run_outputs.append_metrics = fill_then_append
    try:
      with self.assertRaisesRegex(
          errors.RunDirError,
          rf"cannot write {re.escape(path)}: No space left on device") as c:
        _train(run_dir)
    finally:
      training.run_outputs.append_metrics = append
    _one_line(self, c.exception)
    self.assertEqual(os.path.getsize(path), 0)  # No part of a record.
    os.remove(filler)
    _train(run_dir)  # Recreates epoch 1's record from the checkpoint.
    self.assertEqual(_steady(_metrics(run_dir)), _steady(reference[:1]))

  def test_read_only_checkpoint_directory(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir)
    ckpt_dir = runs.ckpt_dir(run_dir)
    if os.geteuid() == 0:
      # Root ignores permissions: a read-only bind mount instead.
      for args in (["mount", "--bind", ckpt_dir, ckpt_dir],
                   ["mount", "-o", "remount,ro,bind", ckpt_dir]):
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode:
          self.skipTest(f"cannot bind-mount read-only: "
                        f"{result.stderr.strip()}")
        if args[1] == "--bind":
          self.addCleanup(subprocess.run, ["umount", "-l", ckpt_dir],
                          check=False)
    else:
      os.chmod(ckpt_dir, 0o555)
      self.addCleanup(os.chmod, ckpt_dir, 0o755)
    before = self._state(run_dir)
    with self.assertRaisesRegex(
        errors.RunDirError,
        rf"cannot write {re.escape(ckpt_dir)}/ckpt-16: .*"
        r"(Read-only file system|Permission denied)") as caught:
      _train(run_dir, epochs=2)
    _one_line(self, caught.exception)
    self.assertEqual(self._state(run_dir), before)


class SignalCliTest(tf.test.TestCase):
  """tfvae-train under a lock and a SIGTERM, in real processes."""

  def test_second_trainer_refused_then_sigterm_saves_and_exits_143(self):
    data_dir = util.write_small_idx_dir(
        os.path.join(self.create_tempdir().full_path, "idx"), num_train=512,
        num_test=32)
    run_dir = os.path.join(self.create_tempdir().full_path, "run")
    args = ["--data_dir", data_dir, "--run_dir", run_dir, "--batch_size=16",
            "--hidden_sizes=32", "--epochs=200", "--steps_per_call=1",
            "--save_every_steps=1000000"]
    first = subprocess.Popen([sys.executable, "-m", "tools.train", *args],
                             cwd=util.REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
      deadline = time.time() + 120
      while time.time() < deadline and first.poll() is None and \
          not _steps(runs.ckpt_dir(run_dir)):
        time.sleep(0.1)
      self.assertIsNone(first.poll(), "the first trainer ended early")
      second = util.run_tool("tools.train", *args)
      self.assertEqual(second.returncode, 1)
      self.assertNotIn("Traceback", second.stderr)
      last = second.stderr.strip().splitlines()[-1]
      self.assertRegex(last, rf"error: {re.escape(run_dir)} is in use: "
                       rf"another process \(pid {first.pid}\)")
      first.send_signal(signal.SIGTERM)
      _, stderr = first.communicate(timeout=120)
    finally:
      if first.poll() is None:
        first.kill()
        first.communicate()
    self.assertEqual(first.returncode, 128 + signal.SIGTERM, stderr[-2000:])
    self.assertNotIn("Traceback", stderr)
    last = stderr.strip().splitlines()[-1]
    match = re.search(r"stopped by SIGTERM at step (\d+); newest checkpoint "
                      r"(\S+); rerun", last)
    self.assertIsNotNone(match, last)
    step = int(match.group(1))
    ckpt_dir = runs.ckpt_dir(run_dir)
    self.assertTrue(match.group(2).endswith(f"/ckpt/ckpt-{step}"), last)
    self.assertEqual(tf.train.latest_checkpoint(ckpt_dir),
                     os.path.join(ckpt_dir, f"ckpt-{step}"))
    self.assertIsNone(runs.verify_checkpoint(
        os.path.join(ckpt_dir, f"ckpt-{step}")))
    for record in _metrics(run_dir):  # Whole records only.
      self.assertIn("test_elbo", record)


# `ulimit -f` for the limited programs: room for config.json, metrics.jsonl
# and a picture, not for the 600 KB checkpoint or the SavedModel variables.
_FILE_SIZE_LIMIT = 64 * 1024


def _run_file_size_limited(module, *args):
  """Runs `python -m module` with files limited to _FILE_SIZE_LIMIT bytes.

  SIGXFSZ is ignored, as a shell that ignores it would leave it, so writes
  past the limit fail with EFBIG ("File too large") instead of killing.
  """

  def limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE,
                       (_FILE_SIZE_LIMIT, _FILE_SIZE_LIMIT))

  return subprocess.run([sys.executable, "-m", module, *args], cwd=util.REPO,
                        capture_output=True, text=True, timeout=300,
                        preexec_fn=limit, check=False)


class FileSizeLimitCliTest(tf.test.TestCase):
  """tfvae-train and tfvae-export under `ulimit -f` (issue 18)."""

  def _last_line(self, result):
    self.assertEqual(result.returncode, 1, result.stderr[-2000:])
    self.assertNotIn("Traceback", result.stderr)
    return result.stderr.strip().splitlines()[-1]

  def test_file_too_large_is_one_line_and_leaves_the_run_whole(self):
    data_dir = util.write_small_idx_dir(
        os.path.join(self.create_tempdir().full_path, "idx"), num_train=64,
        num_test=16)
    run_dir = os.path.join(self.create_tempdir().full_path, "run")
    launch.run(tfvae.Config(data_dir=data_dir, batch_size=16,
                            hidden_sizes=(32,), epochs=1), run_dir)
    ckpt_dir = runs.ckpt_dir(run_dir)

    def state():
      with open(runs.config_path(run_dir)) as f:
        config = json.load(f)
      config.pop("epochs")  # Rewritten, whole, for --epochs=2.
      with open(runs.metrics_path(run_dir), "rb") as f:
        metrics = f.read()
      return (config, metrics, tf.train.latest_checkpoint(ckpt_dir),
              sorted(os.listdir(ckpt_dir)))

    before = state()
    result = _run_file_size_limited(
        "tools.train", "--data_dir", data_dir, "--run_dir", run_dir,
        "--batch_size=16", "--hidden_sizes=32", "--epochs=2")
    self.assertRegex(
        self._last_line(result),
        rf"error: cannot write {re.escape(ckpt_dir)}/ckpt-8: "
        rf"{re.escape(ckpt_dir)}/ckpt-8_temp/\S+; File too large$")
    self.assertEqual(state(), before)
    self.assertIsNone(runs.verify_checkpoint(before[2]))

    # tfvae-export, in this process (a third TensorFlow start costs more
    # than the check): only the soft limit drops, so it can be raised again.
    export_dir = os.path.join(self.create_tempdir().full_path, "exports")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT, hard))
    try:
      with self.assertRaisesRegex(
          errors.TfvaeError,
          rf"could not write the SavedModel for {re.escape(export_dir)}/1: "
          r"\S+; File too large$") as caught:
        export.export_run(run_dir, export_dir)
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    _one_line(self, caught.exception)
    self.assertEqual(os.listdir(export_dir), [])


if __name__ == "__main__":
  tf.test.main()
