"""End-to-end tests of the tfvae-train program, in real subprocesses."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import tensorflow as tf

from tests import util


class TrainCliTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = util.write_small_idx_dir(
        os.path.join(tf.compat.v1.test.get_temp_dir(), "idx"), num_train=2048,
        num_test=128)

  def _args(self, run_dir, *extra):
    return ["--data_dir", self.data_dir, "--run_dir", run_dir,
            "--batch_size=32", "--hidden_sizes=64", *extra]

  def test_help_documents_every_flag(self):
    result = util.run_tool("tools.train", "--helpfull")
    text = result.stdout + result.stderr
    for flag in ("dataset", "data_dir", "model", "network", "latent_dim",
                 "hidden_sizes", "activation", "likelihood", "gaussian_scale",
                 "binarize", "beta", "seed", "batch_size", "epochs",
                 "optimizer", "learning_rate", "clip_norm", "jit", "strategy",
                 "cpu_devices", "steps_per_call", "run_dir",
                 "save_every_steps", "keep_checkpoints", "log_every_steps"):
      # absl wraps a long list of choices onto the next line.
      match = re.search(rf"--(?:\[no\])?{flag}:\s+(.+)", text)
      self.assertIsNotNone(match, f"--{flag} undocumented")
      self.assertGreater(len(match.group(1)), 10, flag)
    self.assertEqual(result.returncode, 1)  # absl's --help exit status

  def test_sigkill_mid_epoch_then_rerun_resumes_from_the_checkpoint(self):
    run_dir = os.path.join(self.create_tempdir().full_path, "run")
    marker = os.path.join(self.create_tempdir().full_path, "paused")
    # 64 steps per epoch; a checkpoint every 8 steps. The trainer pauses
    # once ckpt-72 (8 steps into epoch 2) is saved, and is killed there.
    args = [sys.executable, "-m", "tools.train",
            *self._args(run_dir, "--epochs=3", "--save_every_steps=8",
                        "--keep_checkpoints=50")]
    proc = subprocess.Popen(
        args, cwd=util.REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, TFVAE_TEST_PAUSE_AT_STEP="72",
                 TFVAE_TEST_PAUSE_MARKER=marker))
    try:
      while proc.poll() is None and not os.path.exists(marker):
        time.sleep(0.05)
      self.assertIsNone(proc.poll(), "training ended before it paused")
      proc.send_signal(signal.SIGKILL)
      self.assertEqual(proc.wait(timeout=30), -signal.SIGKILL)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    ckpt_dir = os.path.join(run_dir, "ckpt")
    self.assertEqual(sorted(self._readable_checkpoint_steps(ckpt_dir)),
                     list(range(8, 73, 8)))
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      self.assertEqual([json.loads(line)["epoch"] for line in f], [1])
    result = util.run_tool("tools.train", *self._args(run_dir, "--epochs=3"))
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertRegex(result.stderr, r"Resumed from \S+ckpt-72 at step 72 ")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    self.assertEqual([r["epoch"] for r in records], [1, 2, 3])
    self.assertEqual(records[-1]["step"], 192)
    self.assertEqual(
        tf.train.latest_checkpoint(ckpt_dir), os.path.join(ckpt_dir,
                                                           "ckpt-192"))

  @staticmethod
  def _readable_checkpoint_steps(ckpt_dir):
    """Steps N whose ckpt-N has an index and every tensor reads back."""
    steps = []
    for index in glob.glob(os.path.join(ckpt_dir, "ckpt-*.index")):
      prefix = index[:-len(".index")]
      try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
          reader.get_tensor(name)
      except Exception:  # pylint: disable=broad-except
        continue
      steps.append(int(re.search(r"ckpt-(\d+)$", prefix).group(1)))
    return steps

  def test_bad_inputs_give_one_line_errors(self):
    truncated = self.create_tempdir().full_path
    util.write_small_idx_dir(truncated, num_train=64, num_test=16)
    path = os.path.join(truncated, "train-images-idx3-ubyte")
    with open(path, "r+b") as f:
      f.truncate(1000)
    cases = [
        (["--data_dir", truncated, "--run_dir",
          self.create_tempdir().full_path], "train-images-idx3-ubyte"),
        (self._args(self.create_tempdir().full_path, "--hidden_sizes=a,b"),
         "--hidden_sizes"),
        (self._args(self.create_tempdir().full_path, "--batch_size=0"),
         "--batch_size"),
        (self._args(self.create_tempdir().full_path, "stray"),
         "Unexpected arguments: stray"),
    ]
    for args, needle in cases:
      result = util.run_tool("tools.train", *args)
      self.assertNotEqual(result.returncode, 0, args)
      self.assertNotIn("Traceback", result.stderr)
      lines = [l for l in result.stderr.splitlines() if l.strip()]
      self.assertIn(needle, lines[-1])
      errors_lines = [l for l in lines if "rror" in l]
      self.assertLen(errors_lines, 1, result.stderr)


if __name__ == "__main__":
  tf.test.main()
