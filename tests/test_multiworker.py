"""Multi-worker training: worker processes on 127.0.0.1 against one process.

The end-to-end tests start real `tfvae-train` processes (the cluster is the
point): two workers over loopback with free ports, and a single process with
`--strategy=mirrored --cpu_devices=2` as the reference, on the first 4096
training images of Fashion-MNIST. Every process runs in its own process group
under a deadline and is killed in tearDown.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae import distribute
from tfvae import errors
from tfvae import idx
from tfvae import input_pipeline
from tfvae import runs

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUM_TRAIN = 4096
_NUM_TEST = 64
_BATCH = 16
_EPOCHS = 1
_TOTAL_STEPS = _EPOCHS * _NUM_TRAIN // _BATCH  # 256
_SAVE_EVERY = 50
_TRAIN_FLAGS = [
    f"--epochs={_EPOCHS}", f"--batch_size={_BATCH}", "--hidden_sizes=32",
    "--latent_dim=2", "--binarize=dynamic", f"--save_every_steps={_SAVE_EVERY}",
    "--log_every_steps=50", "--keep_checkpoints=3", "--seed=3",
]
# Seconds a training process may run (start-up on a loaded 2-core machine
# included); a survivor must stop this long after its peer was killed
# (heartbeat timeout about 10 s).
_RUN_TIMEOUT = 240
_STOP_TIMEOUT = 60
# Bit-identical on this machine (two-operand sums do not depend on the order
# of the all-reduce); the slack allows another all-reduce implementation.
_WEIGHT_ATOL = 1e-6


def _free_ports(count):
  """`count` distinct free TCP ports on 127.0.0.1 (bound together)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _write_data(directory):
  full = data.load("fashion_mnist")
  os.makedirs(directory, exist_ok=True)
  idx.write_idx(os.path.join(directory, "train-images-idx3-ubyte"),
                full.train.images[:_NUM_TRAIN, :, :, 0])
  idx.write_idx(os.path.join(directory, "train-labels-idx1-ubyte"),
                full.train.labels[:_NUM_TRAIN].astype(np.uint8))
  idx.write_idx(os.path.join(directory, "t10k-images-idx3-ubyte"),
                full.test.images[:_NUM_TEST, :, :, 0])
  idx.write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte"),
                full.test.labels[:_NUM_TEST].astype(np.uint8))


class _Process:
  """A `python -m tools.train` process in its own group, logging to a file."""

  def __init__(self, args, log_path, env=None):
    self.log_path = log_path
    self._log = open(log_path, "w")
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    full_env.pop(distribute.TF_CONFIG, None)
    self.popen = subprocess.Popen(
        [sys.executable, "-m", "tools.train", *args], cwd=_REPO,
        stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
        start_new_session=True)

  def wait(self, timeout):
    """Exit status, or None if still running after `timeout` seconds."""
    try:
      return self.popen.wait(timeout=max(timeout, 0))
    except subprocess.TimeoutExpired:
      return None

  def kill(self):
    if self.popen.poll() is None:
      try:
        os.killpg(self.popen.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    self.popen.wait(timeout=30)
    self._log.close()

  def output(self):
    with open(self.log_path) as f:
      return f.read()


def _final_state(run_dir, step=_TOTAL_STEPS):
  reader = tf.train.load_checkpoint(
      os.path.join(run_dir, "ckpt", f"ckpt-{step}"))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name.startswith(("model/", "optimizer/", "step/"))}


def _tree(run_dir):
  """Relative paths under `run_dir`, event file names reduced to a mark."""
  paths = []
  for root, _, files in os.walk(run_dir):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), run_dir)
      paths.append(re.sub(r"events\.out\.tfevents\..*", "EVENTS", rel))
  return sorted(paths)


def _checkpoint_steps(run_dir):
  directory = os.path.join(run_dir, "ckpt")
  if not os.path.isdir(directory):
    return []
  return sorted(int(m.group(1)) for m in (
      re.match(r"^ckpt-(\d+)\.index$", n) for n in os.listdir(directory)) if m)


class MultiWorkerTrainingTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.work_dir = tempfile.mkdtemp(prefix="tfvae_multiworker_")
    cls.data_dir = os.path.join(cls.work_dir, "data")
    _write_data(cls.data_dir)
    # The reference runs while the first test's workers start.
    cls.reference_dir = os.path.join(cls.work_dir, "mirrored")
    cls.reference = _Process(
        [*_TRAIN_FLAGS, f"--data_dir={cls.data_dir}",
         f"--run_dir={cls.reference_dir}", "--strategy=mirrored",
         "--cpu_devices=2"], os.path.join(cls.work_dir, "mirrored.log"))
    cls._reference_status = None

  @classmethod
  def tearDownClass(cls):
    cls.reference.kill()
    shutil.rmtree(cls.work_dir, ignore_errors=True)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    self.processes = []

  def tearDown(self):
    for process in self.processes:
      process.kill()
    super().tearDown()

  def _reference_state(self):
    cls = type(self)
    if cls._reference_status is None:
      cls._reference_status = cls.reference.wait(_RUN_TIMEOUT)
    self.assertEqual(cls._reference_status, 0,
                     f"mirrored reference run failed:\n"
                     f"{cls.reference.output()[-3000:]}")
    return _final_state(cls.reference_dir)

  def _start_workers(self, run_dir, ports, tmp_dir, label):
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    workers = []
    for index in range(len(ports)):
      os.makedirs(tmp_dir, exist_ok=True)
      worker = _Process(
          [*_TRAIN_FLAGS, f"--data_dir={self.data_dir}", f"--run_dir={run_dir}",
           "--strategy=multi_worker", f"--worker_hosts={hosts}",
           f"--task_index={index}"],
          os.path.join(self.work_dir, f"{label}_worker{index}.log"),
          env={"TMPDIR": tmp_dir})
      self.processes.append(worker)
      workers.append(worker)
    return workers

  def _wait_all(self, processes, timeout):
    deadline = time.monotonic() + timeout
    return [p.wait(deadline - time.monotonic()) for p in processes]

  def _assert_same_state(self, got, expected):
    self.assertEqual(sorted(got), sorted(expected))
    for name, value in expected.items():
      self.assertAllClose(got[name], value, rtol=0, atol=_WEIGHT_ATOL,
                          msg=name)

  def test_two_workers_equal_one_mirrored_process(self):
    run_dir = os.path.join(self.work_dir, "two_workers")
    tmp_dir = os.path.join(self.work_dir, "two_workers_tmp")
    workers = self._start_workers(run_dir, _free_ports(2), tmp_dir, "plain")
    statuses = self._wait_all(workers, _RUN_TIMEOUT)
    for worker, status in zip(workers, statuses):
      self.assertEqual(status, 0, worker.output()[-3000:])

    chief_log, other_log = workers[0].output(), workers[1].output()
    self.assertIn("global batch 16 = 2 replica(s) x 8 per replica", chief_log)
    self.assertIn("(chief)", chief_log)
    self.assertIn("(not chief)", other_log)
    # Only the chief wrote: the run directory holds what the single process
    # wrote, file for file (one event file per summary directory).
    self._assert_same_state(_final_state(run_dir), self._reference_state())
    self.assertEqual(_tree(run_dir), _tree(self.reference_dir))
    self.assertEqual(_checkpoint_steps(run_dir), [200, 250, 256])
    # Later programs read the run like a one-machine run.
    config, model, step = runs.restore_model(run_dir)
    self.assertEqual((config.strategy, step), ("multi_worker", _TOTAL_STEPS))
    weights = {v.name: v.numpy() for v in model.trainable_variables}
    _, reference_model, _ = runs.restore_model(self.reference_dir)
    for v in reference_model.trainable_variables:
      self.assertAllClose(weights[v.name], v.numpy(), rtol=0,
                          atol=_WEIGHT_ATOL)
    # The other worker's temporary run directory is gone.
    self.assertEqual([n for n in os.listdir(tmp_dir)
                      if n.startswith("tfvae-worker")], [])
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    with open(os.path.join(self.reference_dir, "metrics.jsonl")) as f:
      expected = [json.loads(line) for line in f]
    self.assertEqual([r["step"] for r in records], [_TOTAL_STEPS])
    for got, want in zip(records, expected):
      self.assertAllClose(got["test_elbo"], want["test_elbo"], rtol=1e-5)

  def test_killed_worker_stops_the_job_and_restart_resumes(self):
    run_dir = os.path.join(self.work_dir, "killed")
    tmp_dir = os.path.join(self.work_dir, "killed_tmp")
    ports = _free_ports(2)
    chief, other = self._start_workers(run_dir, ports, tmp_dir, "first")
    deadline = time.monotonic() + _RUN_TIMEOUT
    while not _checkpoint_steps(run_dir):
      self.assertIsNone(chief.popen.poll(), chief.output()[-3000:])
      self.assertLess(time.monotonic(), deadline, "no checkpoint written")
      time.sleep(0.05)
    os.killpg(other.popen.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    status = chief.wait(_STOP_TIMEOUT)
    stopped_after = time.monotonic() - killed_at
    self.assertIsNotNone(status, f"the chief still runs {_STOP_TIMEOUT} s "
                         "after its peer was killed")
    self.assertEqual(status, 1, chief.output()[-3000:])
    last_line = chief.output().strip().splitlines()[-1]
    self.assertRegex(last_line, r"^train\.py: error: worker 0: lost contact "
                     r"with worker 1 of the cluster \(.*\); training stopped\. "
                     r"Restart every worker with the same command to resume")
    self.assertLess(stopped_after, _STOP_TIMEOUT)
    steps = _checkpoint_steps(run_dir)
    self.assertNotEmpty(steps)
    newest = steps[-1]
    self.assertBetween(newest, _SAVE_EVERY, _TOTAL_STEPS - 1)

    chief, other = self._start_workers(run_dir, _free_ports(2), tmp_dir,
                                       "restarted")
    statuses = self._wait_all([chief, other], _RUN_TIMEOUT)
    self.assertEqual(statuses, [0, 0],
                     chief.output()[-2000:] + other.output()[-2000:])
    self.assertIn(f"Resumed from {run_dir}/ckpt/ckpt-{newest} at step "
                  f"{newest}", chief.output())
    self.assertIn(f"Resumed from the chief's checkpoint at step {newest}",
                  other.output())
    self.assertNotIn("Starting a new run", chief.output() + other.output())
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      self.assertEqual([json.loads(line)["step"] for line in f],
                       [_TOTAL_STEPS])
    # Resuming is exact: the interrupted run ends where an uninterrupted one
    # does.
    self._assert_same_state(_final_state(run_dir), self._reference_state())


class ClusterConfigTest(tf.test.TestCase, parameterized.TestCase):

  def test_tf_config_from_hosts(self):
    self.assertEqual(
        distribute.tf_config_from_hosts(["h1:1234", "h2:1234"], 1),
        {"cluster": {"worker": ["h1:1234", "h2:1234"]},
         "task": {"type": "worker", "index": 1}})

  @parameterized.named_parameters(
      ("no_port", ["h1", "h2:1"], 0, "--worker_hosts: 'h1'"),
      ("bad_port", ["h1:99999"], 0, "--worker_hosts: 'h1:99999'"),
      ("twice", ["h1:1", "h1:1"], 0, "listed twice"),
      ("no_index", ["h1:1", "h2:1"], None, "--task_index: required"),
      ("index_out_of_range", ["h1:1", "h2:1"], 2, "--task_index=2: must be "
       "in 0..1"),
  )
  def test_bad_hosts_name_the_flag(self, hosts, index, message):
    with self.assertRaisesRegex(distribute.ClusterError, re.escape(message)):
      distribute.tf_config_from_hosts(hosts, index)

  @parameterized.named_parameters(
      ("not_json", "{cluster", "TF_CONFIG is not valid JSON"),
      ("no_cluster", '{"task": {"type": "worker", "index": 0}}',
       'TF_CONFIG has no "cluster"'),
      ("ps_job", '{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps"}}',
       "job 'ps' is not used"),
      ("bad_address", '{"cluster": {"worker": ["h"]}, "task": {"type": '
       '"worker", "index": 0}}', "TF_CONFIG cluster.worker: 'h'"),
      ("bad_index", '{"cluster": {"worker": ["h:1"]}, "task": {"type": '
       '"worker", "index": 1}}', "task.index=1"),
  )
  def test_bad_tf_config_is_one_clear_error(self, text, message):
    with self.assertRaisesRegex(distribute.ClusterError, re.escape(message)):
      distribute.parse_tf_config(text)

  def test_configure_builds_and_checks_tf_config(self):
    environ = {}
    cluster, task_type, index = distribute.configure(["a:1", "b:2"], 1,
                                                     environ)
    self.assertEqual((cluster, task_type, index),
                     ({"worker": ["a:1", "b:2"]}, "worker", 1))
    self.assertEqual(json.loads(environ["TF_CONFIG"])["task"]["index"], 1)
    # The same cluster again is fine; another one is refused.
    distribute.configure(["a:1", "b:2"], 1, environ)
    with self.assertRaisesRegex(distribute.ClusterError,
                                "describe another cluster"):
      distribute.configure(["a:1", "c:2"], 1, environ)
    with self.assertRaisesRegex(distribute.ClusterError, "set TF_CONFIG"):
      distribute.configure(None, None, {})
    with self.assertRaisesRegex(distribute.ClusterError,
                                "without --worker_hosts"):
      distribute.configure(None, 0, {})
    self.assertTrue(issubclass(distribute.ClusterError, errors.TfvaeError))

  def test_strategy_before_start_is_a_clear_error(self):
    with self.assertRaisesRegex(errors.TfvaeError, "cluster is not started"):
      distribute.multi_worker_strategy()


class ClusterFlagsCliTest(tf.test.TestCase):

  def test_bad_tf_config_is_one_line_and_writes_nothing(self):
    run_dir = os.path.join(self.get_temp_dir(), "run")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}, '
               '"task": {"type": "worker", "index": 3}}')
    result = subprocess.run(
        [sys.executable, "-m", "tools.train", "--strategy=multi_worker",
         f"--run_dir={run_dir}"], cwd=_REPO, env=env, capture_output=True,
        text=True, timeout=120, check=False)
    self.assertEqual(result.returncode, 1, result.stderr[-2000:])
    self.assertEqual(
        result.stderr.strip().splitlines()[-1],
        "train.py: error: TF_CONFIG: task.index=3 is not an index of "
        "cluster.worker")
    self.assertFalse(os.path.exists(run_dir))


class ReplicaBatchesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("two_workers", 2, 1, 0),
      ("two_workers_resumed", 2, 1, 3),
      ("two_workers_of_two_devices", 2, 2, 1),
  )
  def test_workers_read_their_replicas_slices(self, workers, local, skip):
    rng = np.random.default_rng(0)
    split = data.Split(rng.integers(0, 256, [100, 2, 2, 1], dtype=np.uint8),
                       np.arange(100, dtype=np.int64))
    replicas = workers * local
    global_batch = 4 * replicas
    expected = [b["label"].numpy() for b in input_pipeline.train_dataset(
        split, global_batch, seed=5, epoch=2, skip_batches=skip)]
    per_worker = [
        [b["label"].numpy() for b in distribute.replica_batches(
            split, global_batch, 5, 2, skip, w * local, local, replicas)]
        for w in range(workers)]
    # What each replica gets, in global replica order, step by step.
    got = [np.concatenate([per_worker[w][step * local + j]
                           for w in range(workers) for j in range(local)])
           for step in range(len(expected))]
    self.assertLen(per_worker[0], len(expected) * local)
    self.assertAllEqual(np.stack(got), np.stack(expected))
    # Workers read disjoint examples.
    seen = [np.concatenate(batches) for batches in per_worker]
    self.assertEmpty(np.intersect1d(seen[0], seen[1]))


if __name__ == "__main__":
  tf.test.main()
