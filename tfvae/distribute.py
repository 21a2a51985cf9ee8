"""Training on several machines: TF_CONFIG and MultiWorkerMirroredStrategy.

Every worker runs the same `tfvae-train` command; TensorFlow's
`tf.distribute.MultiWorkerMirroredStrategy` keeps one replica per local device
(one per worker on CPU) and all-reduces the gradients over gRPC. The cluster
is described the standard way, by the `TF_CONFIG` environment variable:

  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}'

(`tf_config_from_hosts` builds it from a host list and an index.) Worker 0, or
the task of type "chief" if the cluster has one, is the chief.

What this module adds to the single-machine `training.Trainer`:

* Data. Each worker builds only its own replicas' examples of every global
  batch: replica r (global id) gets examples [r * b, (r + 1) * b) of global
  batch k of the single-machine order (`input_pipeline.train_dataset`), b the
  per-replica batch. Workers read disjoint parts of every epoch, and since the
  replica ids and the per-example noise (`rng.ExampleNoise`) are the
  same, a run on n workers computes what `--strategy=mirrored` over n devices
  of one machine computes. The slicing is explicit
  (`distribute_datasets_from_function`, no auto-sharding): auto-sharding
  by DATA would also split every batch, but only through tf.data's rebatching
  internals, and the FILE policy has no files to shard here.
* Writing. Only the chief writes the run directory (checkpoints, summaries,
  metrics.jsonl, config.json, pictures). The other workers run in a private
  temporary directory that is removed when they stop (TensorFlow's
  multi-worker saving pattern), so no worker's file ever lands in the run
  directory and no checkpoint there is written half by another worker.
* Resuming. The chief restores the newest intact checkpoint of the run
  directory (`runs.recover_checkpoints`) and broadcasts the whole training
  state (weights, optimizer slots, step) to the others, so the run directory
  need only be on the chief's disk.
* Failures. A killed worker stops sending heartbeats to TensorFlow's
  coordination service; within about ten seconds every survivor's next
  collective fails and it stops with `WorkerLostError`, one line saying which
  task was lost and how to resume. Restarting every worker with the same
  command resumes from the chief's newest checkpoint; the periodic
  `CheckpointManager` saves (`--save_every_steps`) bound the lost work.
"""
import contextlib
import json
import os
import re
import shutil
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import input_pipeline
from tfvae import rng
from tfvae import runs
from tfvae import training

STRATEGY = "multi_worker"
TF_CONFIG = "TF_CONFIG"
_JOBS = ("chief", "worker")
_ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")
_TASK_RE = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
# The errors a collective raises when a peer is gone or unreachable.
_LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                     tf.errors.AbortedError, tf.errors.CancelledError)

_strategy = None


class ClusterError(errors.TfvaeError):
  """TF_CONFIG, --worker_hosts or --task_index do not describe a cluster."""


class WorkerLostError(errors.TfvaeError):
  """A worker of a multi-worker run died or became unreachable."""


def tf_config_from_hosts(worker_hosts, task_index):
  """The TF_CONFIG dict of worker `task_index` of a cluster of workers.

  Args:
    worker_hosts: List of "host:port" strings, one per worker, the same on
      every worker; worker 0 is the chief.
    task_index: This worker's index in `worker_hosts`.

  Returns:
    {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}.

  Raises:
    ClusterError: Naming the flag at fault.
  """
  hosts = [h.strip() for h in worker_hosts]
  if not hosts or not all(hosts):
    raise ClusterError(f"--worker_hosts={','.join(worker_hosts)}: expected "
                       "comma-separated host:port addresses")
  for host in hosts:
    _check_address(host, "--worker_hosts")
  if len(set(hosts)) != len(hosts):
    raise ClusterError(f"--worker_hosts={','.join(hosts)}: an address is "
                       "listed twice")
  if task_index is None:
    raise ClusterError("--task_index: required with --worker_hosts (this "
                       "worker's position in the list, 0 for the chief)")
  if not 0 <= task_index < len(hosts):
    raise ClusterError(f"--task_index={task_index}: must be in "
                       f"0..{len(hosts) - 1} for {len(hosts)} worker hosts")
  return {"cluster": {"worker": hosts},
          "task": {"type": "worker", "index": int(task_index)}}


def _check_address(address, where):
  m = _ADDRESS_RE.match(address)
  if not m or not 0 < int(m.group(2)) < 65536:
    raise ClusterError(f"{where}: {address!r} is not a host:port address")


def parse_tf_config(text):
  """Checks a TF_CONFIG string for multi-worker training.

  Args:
    text: The JSON text of TF_CONFIG.

  Returns:
    (cluster, task_type, task_index): the cluster dict {job: [addresses]},
    this task's job ("chief" or "worker") and index.

  Raises:
    ClusterError: Naming what is wrong with TF_CONFIG.
  """
  try:
    tf_config = json.loads(text)
  except ValueError as e:
    raise ClusterError(f"{TF_CONFIG} is not valid JSON: {e}") from None
  if not isinstance(tf_config, dict):
    raise ClusterError(f"{TF_CONFIG} must be a JSON object with \"cluster\" "
                       "and \"task\"")
  cluster, task = tf_config.get("cluster"), tf_config.get("task")
  if not isinstance(cluster, dict) or not cluster:
    raise ClusterError(f"{TF_CONFIG} has no \"cluster\" object (e.g. "
                       "{\"worker\": [\"host1:port\", \"host2:port\"]})")
  for job, addresses in cluster.items():
    if job not in _JOBS:
      raise ClusterError(f"{TF_CONFIG}: job {job!r} is not used by "
                         "multi-worker training; use \"worker\" (and at most "
                         "one \"chief\")")
    if not isinstance(addresses, list) or not addresses:
      raise ClusterError(f"{TF_CONFIG}: cluster.{job} must be a non-empty "
                         "list of host:port addresses")
    for address in addresses:
      _check_address(str(address), f"{TF_CONFIG} cluster.{job}")
  if len(cluster.get("chief", [])) > 1:
    raise ClusterError(f"{TF_CONFIG}: cluster.chief may list one address "
                       "only")
  if not isinstance(task, dict) or task.get("type") not in cluster:
    raise ClusterError(f"{TF_CONFIG}: task.type must name a job of the "
                       f"cluster ({', '.join(cluster)}), got "
                       f"{task.get('type') if isinstance(task, dict) else task!r}")
  index = task.get("index", 0)
  if not isinstance(index, int) or not 0 <= index < len(
      cluster[task["type"]]):
    raise ClusterError(f"{TF_CONFIG}: task.index={index!r} is not an index "
                       f"of cluster.{task['type']}")
  return cluster, task["type"], index


def configure(worker_hosts=None, task_index=None, environ=None):
  """Sets TF_CONFIG from --worker_hosts/--task_index, or checks the given one.

  Args:
    worker_hosts: List of "host:port", or None/empty to use TF_CONFIG.
    task_index: This worker's index in `worker_hosts`.
    environ: The environment to read and set (default `os.environ`).

  Returns:
    (cluster, task_type, task_index) as `parse_tf_config` returns them.

  Raises:
    ClusterError: If neither is given, they disagree or either is malformed.
  """
  environ = os.environ if environ is None else environ
  given = environ.get(TF_CONFIG)
  if worker_hosts:
    built = tf_config_from_hosts(worker_hosts, task_index)
    if given and parse_tf_config(given) != (built["cluster"], "worker",
                                            built["task"]["index"]):
      raise ClusterError(f"--worker_hosts/--task_index describe another "
                         f"cluster than {TF_CONFIG}={given}; give one of them")
    environ[TF_CONFIG] = json.dumps(built)
  elif task_index is not None:
    raise ClusterError("--task_index: given without --worker_hosts")
  elif not given:
    raise ClusterError(f"--strategy={STRATEGY}: set {TF_CONFIG} or give "
                       "--worker_hosts and --task_index")
  return parse_tf_config(environ[TF_CONFIG])


def start(worker_hosts=None, task_index=None, collective_timeout=0.0):
  """Joins the cluster: configures TF_CONFIG and creates the strategy.

  Must run before TensorFlow runs any op in this process (so first in a
  program), and once. Blocks until every worker of the cluster has started.

  Args:
    worker_hosts: See `configure`.
    task_index: See `configure`.
    collective_timeout: Seconds after which a collective (all-reduce) that
      has not completed fails; 0 waits as long as the peers send heartbeats.

  Returns:
    The `tf.distribute.MultiWorkerMirroredStrategy`.
  """
  global _strategy
  if _strategy is not None:
    raise ClusterError("the multi-worker cluster was already started in this "
                       "process")
  if collective_timeout < 0:
    raise ClusterError(f"--collective_timeout={collective_timeout}: must not "
                       "be negative")
  cluster, task_type, index = configure(worker_hosts, task_index)
  num_tasks = sum(len(a) for a in cluster.values())
  logging.info("Joining a cluster of %d workers as %s %d (%s); waiting for "
               "all of them to start.", num_tasks, task_type, index,
               cluster[task_type][index])
  options = tf.distribute.experimental.CommunicationOptions(
      timeout_seconds=collective_timeout or None)
  _strategy = tf.distribute.MultiWorkerMirroredStrategy(
      communication_options=options)
  logging.info("Cluster up: %d replicas in sync, this worker is %s.",
               _strategy.num_replicas_in_sync,
               "the chief" if is_chief(_strategy) else "not the chief")
  return _strategy


def multi_worker_strategy():
  """The strategy `start` created.

  Raises:
    ClusterError: If `start` has not run.
  """
  if _strategy is None:
    raise ClusterError(
        f"--strategy={STRATEGY}: the cluster is not started (tfvae-train "
        f"starts it when --strategy={STRATEGY} is on its command line; from "
        "Python call tfvae.distribute.start() before anything else)")
  return _strategy


def is_multi_worker(strategy):
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
  """Whether this process writes checkpoints and summaries."""
  return strategy.extended.should_checkpoint


def worker_index(strategy):
  """This worker's input pipeline (0 for the chief)."""
  if not is_multi_worker(strategy):
    return 0
  return strategy.extended._id_in_cluster  # pylint: disable=protected-access


def num_workers(strategy):
  if not is_multi_worker(strategy):
    return 1
  return strategy.extended._num_workers  # pylint: disable=protected-access


# Data.


def replica_batches(split, global_batch, seed, epoch, skip_batches,
                    first_replica, num_local, num_replicas):
  """One worker's part of an epoch: its replicas' slices of each batch.

  Global batch k is batch k of `input_pipeline.train_dataset(split,
  global_batch, seed, epoch)`; replica r's slice is its examples
  [r * b, (r + 1) * b) with b = global_batch / num_replicas.

  Args:
    split: The training `data.Split`, N examples.
    global_batch: Examples per step over all replicas, B.
    seed: The run's seed.
    epoch: The epoch number.
    skip_batches: Global batches of the epoch already trained.
    first_replica: Global id of this worker's first replica.
    num_local: This worker's replicas (ids first_replica...+num_local-1).
    num_replicas: Replicas of the whole cluster.

  Returns:
    A `tf.data.Dataset` of {"image": uint8 [b, H, W, C], "label": int64 [b]}:
    for each remaining global batch, the slices of the local replicas in
    order (what tf.distribute hands round-robin to the local devices).
  """
  per_replica = global_batch // num_replicas
  num_batches = input_pipeline.steps_per_epoch(split, global_batch)
  # The order of input_pipeline.train_dataset.
  order = rng.epoch_order(seed, epoch, len(split.labels))
  order = order[skip_batches * global_batch:num_batches * global_batch]
  order = order.reshape(-1, num_replicas, per_replica)
  order = order[:, first_replica:first_replica + num_local].reshape(-1)
  if getattr(split.images, "listing", None) is not None and \
     split.images.listing.shards is not None:
    # Streamed TFRecords (image_sources.StreamedImages): split between the
    # workers by file, each its own seeded shuffle of its records.
    worker, num_workers = first_replica // num_local, num_replicas // num_local
    per_worker = per_replica * num_local
    examples = split.images.worker_examples(
        split.labels, worker, num_workers,
        (rng.shuffle_seed(seed, epoch) + worker) % 2**31)
    examples = examples.skip(skip_batches * per_worker).take(
        (num_batches - skip_batches) * per_worker)
    dataset = examples.map(lambda image, label: {"image": image,
                                                 "label": label})
    return dataset.batch(per_replica, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE)
  if hasattr(split.images, "epoch"):
    # Images streamed from files (image_sources.StreamedImages): each worker
    # reads and decodes only its own.
    dataset = tf.data.Dataset.zip({
        "image": split.images.epoch(order),
        "label": tf.data.Dataset.from_tensor_slices(
            split.labels[order].astype(np.int64))})
    return dataset.batch(per_replica, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE)
  dataset = tf.data.Dataset.from_tensor_slices({
      "image": split.images[order],
      "label": split.labels[order].astype(np.int64),
  })
  return dataset.batch(per_replica, drop_remainder=True).prefetch(
      tf.data.AUTOTUNE)


def distributed_epoch(strategy, split, global_batch, seed, epoch,
                      skip_batches):
  """An epoch's distributed input: each worker reads its replicas' slices."""
  num_replicas = strategy.num_replicas_in_sync

  def dataset_fn(input_context):
    num_local = num_replicas // input_context.num_input_pipelines
    return replica_batches(split, global_batch, seed, epoch, skip_batches,
                           input_context.input_pipeline_id * num_local,
                           num_local, num_replicas)

  return strategy.distribute_datasets_from_function(dataset_fn)


# State.


def broadcast_from_chief(strategy, variables):
  """Sets `variables` on every worker to the chief's values.

  A masked all-reduce: replica 0 (the chief's first) contributes its value,
  every other replica zeros, so the sum is the chief's value exactly.

  Args:
    strategy: The strategy the variables live under.
    variables: Variables created in the same order on every worker (mirrored
      ones or plain per-worker ones).
  """
  variables = list(variables)

  @tf.function
  def chief_values():

    def replica_fn():
      ctx = tf.distribute.get_replica_context()
      from_chief = tf.equal(ctx.replica_id_in_sync_group, 0)
      # One all-reduce per variable: a list would be packed into one tensor,
      # which needs a single dtype.
      return [ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                             tf.where(from_chief, tf.convert_to_tensor(v),
                                      tf.zeros_like(v)))
              for v in variables]

    return strategy.run(replica_fn)

  values = chief_values()
  for variable, value in zip(variables, values):
    variable.assign(strategy.experimental_local_results(value)[0])


class MultiWorkerTrainer(training.Trainer):
  """A `training.Trainer` on one worker of a multi-worker cluster.

  Args: as for `training.Trainer`; `run_dir` is the run directory on the
  chief, on the other workers their private temporary directory, and
  `strategy` a `tf.distribute.MultiWorkerMirroredStrategy`.
  """

  def __init__(self, config, run_dir, dataset, strategy, model, objective,
               optimizer, data_on_device=None):
    super().__init__(config, run_dir, dataset, strategy, model, objective,
                     optimizer, data_on_device=data_on_device)
    self.is_chief = is_chief(strategy)

  def _epoch_input(self, epoch, skip_batches):
    return distributed_epoch(self.strategy, self.train_split,
                             self.config.batch_size, self.config.seed, epoch,
                             skip_batches)

  def _restore(self):
    restored = super()._restore() if self.is_chief else None
    broadcast_from_chief(
        self.strategy, [*self.model.variables, *self.optimizer.variables,
                        self.step, self.epoch])
    if not self.is_chief and int(self.step):
      restored = "the chief's checkpoint"
    return restored

  def _finish_epoch(self, epoch, train, speed, writers):
    if self.is_chief:
      return super()._finish_epoch(epoch, train, speed, writers)
    # Evaluation and pictures are the chief's; this worker's next collective
    # waits for it.
    return {"epoch": epoch, "step": int(self.step), **(train or {}),
            "examples_per_sec": speed}


@contextlib.contextmanager
def own_run_dir(run_dir, strategy):
  """Yields the directory this worker writes: the run directory or a temp one.

  The chief writes `run_dir`; every other worker a fresh temporary directory
  (under $TMPDIR) that is removed when the block ends, however it ends.
  """
  if is_chief(strategy):
    yield run_dir
    return
  own = tempfile.mkdtemp(prefix=f"tfvae-worker{worker_index(strategy)}-")
  try:
    yield own
  finally:
    shutil.rmtree(own, ignore_errors=True)


def _lost_tasks(message, strategy):
  this = (strategy.cluster_resolver.task_type,
          int(strategy.cluster_resolver.task_id))
  found = []
  for job, task in _TASK_RE.findall(message):
    if (job, int(task)) != this and f"{job} {task}" not in found:
      found.append(f"{job} {task}")
  return found


def lost_worker_error(e, strategy, run_dir):
  """The `WorkerLostError` for a collective's failure `e`."""
  message = str(getattr(e, "message", None) or e)
  lost = _lost_tasks(message, strategy)
  why = next((line.strip() for line in message.splitlines()
              if "unhealthy" in line or "Connection" in line
              or "Deadline" in line or "aborted" in line.lower()),
             message.strip().splitlines()[0] if message.strip() else "")
  who = ", ".join(lost) if lost else "a worker"
  return WorkerLostError(
      f"{strategy.cluster_resolver.task_type} "
      f"{strategy.cluster_resolver.task_id}: lost contact with {who} of the "
      f"cluster ({type(e).__name__}: {why[:300]}); training stopped. "
      f"Restart every worker with the same command to resume from the newest "
      f"checkpoint in {run_dir}")


def run(config, run_dir, strategy, make_trainer):
  """`launch.run` on one worker of a cluster (see the module docstring).

  Args:
    config: The resolved, validated config with `image_shape` set.
    run_dir: The run directory (written by the chief only).
    strategy: The strategy `start` created.
    make_trainer: `fn(own_dir)` -> a `MultiWorkerTrainer` writing `own_dir`,
      the directory this worker writes (the launcher builds the model and
      optimizer).

  Returns:
    (trainer, records) as `launch.run` returns them.

  Raises:
    WorkerLostError: If a worker dies or becomes unreachable.
  """
  chief = is_chief(strategy)
  replicas = strategy.num_replicas_in_sync
  try:
    with own_run_dir(run_dir, strategy) as own_dir:
      trainer = make_trainer(own_dir)
      os.makedirs(own_dir, exist_ok=True)
      runs.save_config(own_dir, config)
      logging.info(
          "Multi-worker training, worker %d of %d (%s): global batch %d = %d "
          "replica(s) x %d per replica; %d steps per epoch; %s.",
          worker_index(strategy), num_workers(strategy),
          "chief" if chief else "not chief", config.batch_size, replicas,
          config.batch_size // replicas, trainer.steps_per_epoch,
          f"writing {run_dir}" if chief else
          f"the chief writes the run directory, this worker only {own_dir}")
      records = trainer.train()
  except _LOST_PEER_ERRORS as e:
    raise lost_worker_error(e, strategy, run_dir) from None
  return trainer, records
