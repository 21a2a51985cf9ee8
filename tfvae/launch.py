"""Starting a training run from a config: what `tfvae-train` does.

`run` resolves the config against the run directory's saved one, validates
it, loads the data, builds the strategy, the model, its objective and the
optimizer, and hands them to `training.Trainer`, or, for
--strategy=multi_worker, to `distribute.run`. This module sits above both:
it imports `training` and `distribute`; neither imports it.
"""
import json
import os

from absl import logging
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae import distribute
from tfvae import errors
from tfvae import files
from tfvae import image_sources
from tfvae import kinds
from tfvae import optimizers
from tfvae import precision
from tfvae import runs
from tfvae import training

STRATEGIES = config_lib.STRATEGIES
OPTIMIZERS = config_lib.OPTIMIZERS
# RUN_DIR/data.json: the identity of the data a run was trained on (see
# `check_data_identity`).
DATA_RECORD = "data.json"


def configure_cpu_devices(count):
  """Splits the CPU into `count` logical devices (for mirrored training).

  Must run before TensorFlow initialises its devices.
  """
  if count <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError as e:
    raise errors.TfvaeError(f"--cpu_devices={count}: {e}") from None


def make_strategy(name):
  """Returns the `tf.distribute.Strategy` called `name` (see STRATEGIES).

  "mirrored" uses every GPU, or, without GPUs, every logical CPU device;
  "multi_worker" is the cluster's strategy, started by `distribute.start`.
  """
  if name == distribute.STRATEGY:
    return distribute.multi_worker_strategy()
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_logical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)
  raise errors.TfvaeError(f"--strategy={name}: choose one of "
                          f"{', '.join(STRATEGIES)}")


def make_optimizer(config):
  """Builds the optimizer the config names (tf_keras, for tf.distribute),
  with fused per-variable updates (`optimizers`); for mixed_float16 wrapped
  in dynamic loss scaling (`precision.loss_scale_optimizer`)."""
  clip = config.clip_norm if config.clip_norm > 0 else None
  if config.optimizer in ("adam", "rmsprop"):
    options = {}
    if config.optimizer_epsilon is not None:
      options["epsilon"] = config.optimizer_epsilon
    if config.optimizer == "rmsprop" and config.optimizer_rho is not None:
      options["rho"] = config.optimizer_rho
    optimizer = (optimizers.Adam if config.optimizer == "adam"
                 else optimizers.RMSProp)(config.learning_rate,
                                          global_clipnorm=clip, **options)
    if precision.needs_loss_scaling(config.precision):
      optimizer = precision.loss_scale_optimizer(optimizer)
    return optimizer
  raise errors.TfvaeError(f"--optimizer={config.optimizer}: choose one of "
                          f"{', '.join(OPTIMIZERS)}")


def build_model(config, strategy):
  """The config's model, its variables under `strategy`, seeded by
  `config.seed` (the same seed gives the same initial weights), its networks
  computing in the config's precision (`precision.set_compute_dtype`)."""
  tf.random.set_seed(config.seed)
  with strategy.scope():
    model = kinds.build_model(config)
  return precision.set_compute_dtype(model, config.precision)


def build_trainer(config, run_dir, dataset, strategy, data_on_device=None,
                  trainer_class=training.Trainer):
  """A `trainer_class` with the model, objective and optimizer of `config`.

  Args:
    config: A validated `config.Config` with `image_shape` set.
    run_dir: The directory the trainer writes.
    dataset: A `data.Dataset`.
    strategy: A `tf.distribute.Strategy`.
    data_on_device: See `train_step.TrainStep`.
    trainer_class: `training.Trainer` or a subclass taking its arguments.
  """
  model = build_model(config, strategy)
  with strategy.scope():
    optimizer = make_optimizer(config)
  return trainer_class(config, run_dir, dataset, strategy, model,
                       kinds.build_objective(config), optimizer,
                       data_on_device=data_on_device)


def validate(config):
  """Checks a config's values (`config.Config.validate`); raises TfvaeError
  naming the flag."""
  config.validate()


def resolve_config(run_dir, requested, explicit=None):
  """Merges the requested config with a run directory's saved one.

  Args:
    run_dir: The run directory.
    requested: The `Config` asked for (flags).
    explicit: Names of the fields the user set explicitly (flags given on
      the command line); the others take the saved run's values. None means
      every field was set explicitly.

  Returns:
    The config to train with.

  Raises:
    errors.RunDirError: If `run_dir` cannot be a run directory (empty, a
      file, in a place that cannot be written), or an explicitly set field
      that defines the model, data or optimisation differs in effect from
      the saved run's, naming each.
  """
  if not run_dir:
    raise errors.RunDirError("--run_dir='': must name a directory")
  problem = files.unwritable_reason(run_dir, directory=True)
  if problem:
    raise errors.RunDirError(f"--run_dir={run_dir}: {problem}")
  path = runs.config_path(run_dir)
  if not os.path.exists(path):
    found = runs.found_checkpoints(runs.ckpt_dir(run_dir))
    if found:
      raise errors.RunDirError(
          f"{run_dir} has checkpoints but no {runs.CONFIG}; refusing to guess "
          "what they were trained with")
    return requested
  saved = config_lib.load(path)
  if explicit is None:
    explicit = {f for f in requested.to_dict() if f != "image_shape"}
  merged = saved.replace(**{f: getattr(requested, f) for f in explicit
                            if hasattr(saved, f)})
  differing = [f for f in merged.differences(saved) if f != "image_shape"]
  if differing:
    details = ", ".join(f"--{f}={_flag_value(getattr(merged, f))} (run has "
                        f"{_flag_value(getattr(saved, f))})"
                        for f in differing)
    raise errors.RunDirError(
        f"{run_dir} was trained with other settings: {details}; use a new "
        "--run_dir or drop these flags to resume")
  # Values equal in effect (--activation=tanh for an MLP run saved with
  # None) keep the run's spelling, so that its config.json stays as it was.
  same = merged.differences(saved, effective=False)
  return merged.replace(**{f: getattr(saved, f) for f in same})


def _flag_value(value):
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value)
  return value


def _fit_to_data(config, run_dir, dataset):
  """`config` with the data set's image shape; checks the run's data."""
  for split in ("train", "test"):
    if not len(dataset.split(split).labels):  # pylint: disable=g-explicit-length-test
      raise errors.DataError(
          f"{dataset.source}: the {split} split holds no images; tfvae needs "
          f"both splits (the test split for test_elbo)")
  if config.image_shape is not None and \
     tuple(config.image_shape) != tuple(dataset.image_shape):
    raise errors.RunDirError(
        f"{run_dir} was trained on images of shape {config.image_shape}, "
        f"but {dataset.source} holds {dataset.image_shape}")
  config = config.replace(image_shape=tuple(dataset.image_shape))
  if kinds.get(config.model).conditional and \
     dataset.class_names == image_sources.UNLABELLED:
    raise errors.DataError(
        f"--model={config.model} needs class labels, but {dataset.source} "
        "has none (a folder without class subdirectories, a list file "
        "without labels, arrays without \"labels\")")
  if kinds.get(config.model).conditional and \
     config.num_classes != len(dataset.class_names):
    raise errors.TfvaeError(
        f"--num_classes={config.num_classes}: {dataset.source} has "
        f"{len(dataset.class_names)} classes")
  return config


def check_data_identity(run_dir, dataset, allow_change=False):
  """Checks that a resumed run goes on with the data it was trained on.

  Exact resumption replays the data order of the run's seed, which means
  nothing on other data; a different --data_dir (another copy or version of
  the files) would go unnoticed, so a run records what it read in
  RUN_DIR/data.json: the data set's name, source and a SHA-256 of the
  arrays (`data.fingerprint`).

  Args:
    run_dir: The run directory.
    dataset: The `data.Dataset` about to be trained on.
    allow_change: Resume on other data anyway (--allow_data_change).

  Returns:
    The record of `dataset`, for `record_data_identity`.

  Raises:
    errors.RunDirError: If the run records other data (and not
      `allow_change`), or its record cannot be read.
  """
  record = {"dataset": dataset.name, "source": dataset.source,
            "sha256": data.fingerprint(dataset),
            "train_examples": len(dataset.train.labels),
            "test_examples": len(dataset.test.labels)}
  path = os.path.join(run_dir, DATA_RECORD)
  try:
    with open(path) as f:
      saved = json.load(f)
  except FileNotFoundError:
    return record  # a new run, or one from before data.json
  except (OSError, ValueError) as e:
    raise errors.RunDirError(f"{path}: not a valid data record: {e}") from None
  if not isinstance(saved, dict) or not isinstance(saved.get("sha256"), str):
    raise errors.RunDirError(f"{path}: not a valid data record: expected a "
                             "JSON object with a \"sha256\" string")
  if saved["sha256"] != record["sha256"]:
    if not allow_change:
      raise errors.RunDirError(
          f"{run_dir} was trained on other data: {dataset.source} "
          f"({record['train_examples']} train, {record['test_examples']} "
          f"test images, sha256 {record['sha256'][:12]}) is not "
          f"{saved.get('source')} ({saved.get('train_examples')} train, "
          f"{saved.get('test_examples')} test images, sha256 "
          f"{saved['sha256'][:12]}); pass --allow_data_change to resume on "
          "it anyway, or use a new --run_dir")
    logging.warning("Resuming %s on other data than it was trained on (%s, "
                    "not %s): --allow_data_change.", run_dir, dataset.source,
                    saved.get("source"))
  return record


def record_data_identity(run_dir, record):
  """Writes RUN_DIR/data.json (see `check_data_identity`) atomically, unless
  it already holds `record` (a finished run on a read-only disk writes
  nothing)."""
  path = os.path.join(run_dir, DATA_RECORD)
  text = json.dumps(record, indent=2, sort_keys=True) + "\n"
  try:
    with open(path) as f:
      if f.read() == text:
        return
  except OSError:
    pass
  try:
    with files.atomic_open(path, "w") as f:
      f.write(text)
  except OSError as e:
    raise runs.write_error(path, e) from None


def run(config, run_dir, explicit=None, dataset=None, allow_data_change=False):
  """Trains (or resumes) the run `config` describes in `run_dir`.

  Args:
    config: The requested `config.Config`.
    run_dir: The run directory (created if missing).
    explicit: Fields set explicitly by the user (see `resolve_config`).
    dataset: A `data.Dataset` to use instead of loading `config.data` or
      `config.dataset` (`image_sources.load_for`).
    allow_data_change: Resume on other data than the run recorded (see
      `check_data_identity`).

  Returns:
    (trainer, records): the Trainer and the metric records of this call.
  """
  config = resolve_config(run_dir, config, explicit)
  validate(config)
  if dataset is None:
    dataset = image_sources.load_for(config)
  config = _fit_to_data(config, run_dir, dataset)
  data_record = check_data_identity(run_dir, dataset, allow_data_change)
  strategy = make_strategy(config.strategy)
  # One trainer per run directory: its lock is held until training ends
  # (or the process dies). Of a cluster, only the chief writes (and locks)
  # the run directory; a chief refused exits, and its workers with it.
  writes_run_dir = config.strategy != distribute.STRATEGY or \
      distribute.is_chief(strategy)
  lock = runs.lock_run_dir(run_dir) if writes_run_dir else None
  try:
    if writes_run_dir:
      runs.clean_leftovers(run_dir)
    return _train(config, run_dir, dataset, strategy, data_record)
  finally:
    if lock is not None:
      lock.close()


def _train(config, run_dir, dataset, strategy, data_record):
  """`run`'s training, with the run directory locked; `data_record` is the
  data's identity (`check_data_identity`), recorded for later resumes."""
  if config.strategy == distribute.STRATEGY:
    if distribute.is_chief(strategy):
      record_data_identity(run_dir, data_record)
    return distribute.run(
        config, run_dir, strategy,
        lambda own_dir: build_trainer(
            config, own_dir, dataset, strategy,
            trainer_class=distribute.MultiWorkerTrainer))
  trainer = build_trainer(config, run_dir, dataset, strategy)
  runs.save_config(run_dir, config)
  record_data_identity(run_dir, data_record)
  logging.info("Training %s (%s, latent %d, %s) on %s from %s: %d steps per "
               "epoch, %d replica(s).", config.model, config.network,
               config.latent_dim, config.likelihood, dataset.name,
               dataset.source, trainer.steps_per_epoch,
               strategy.num_replicas_in_sync)
  return trainer, trainer.train()
