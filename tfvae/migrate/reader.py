"""Reading checkpoints that tfvae did not write: what is in them, and whose.

A checkpoint is named by its prefix (`DIR/model` for `DIR/model.index` and
`DIR/model.data-?????-of-?????`). tfvae accepts three ways of pointing at one:

  * the prefix itself (a trailing `.index`, `.meta` or `.data-...` is
    dropped);
  * a directory holding a `checkpoint` state file (the latest checkpoint);
  * a tfvae run directory (`config.json` and a `ckpt/` sub-directory holding a
    TF2 `tf.train.Checkpoint`).

Variables are classified as model weights, optimizer slots or bookkeeping
(step counters, Adam's `beta1_power`, `save_counter`, the object graph), for
both TF1 name-based and TF2 object-based checkpoints.
"""
import dataclasses
import glob
import os
import re

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae.migrate._messages import first_line

TF1_FORMAT = "TF1 name-based"
TF2_FORMAT = "TF2 object-based"

WEIGHT = "weight"
SLOT = "slot"
BOOKKEEPING = "bookkeeping"

SOURCE_TF1_PREFIX = "tf1-checkpoint"
SOURCE_TF2_CHECKPOINT = "tf2-checkpoint"
SOURCE_RUN_DIR = "tfvae-run-dir"

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

# TF1 `tf.compat.v1.train.*Optimizer` slot suffixes (slot variables are named
# `<variable>/<OptimizerName>[_<n>]`).
_TF1_SLOT_RE = re.compile(
    r"^(?P<var>.+)/(?P<opt>RMSProp|Adam|Momentum|Adagrad|AdagradDA|Adadelta|"
    r"Ftrl|ProximalAdagrad|GradientDescent|Nadam|Adamax)(_\d+)?$")
_TF1_OPTIMIZER_NAMES = {"ProximalAdagrad": "Adagrad", "AdagradDA": "Adagrad"}
_TF1_BOOKKEEPING_RE = re.compile(
    r"^(.*/)?(global_step|beta1_power|beta2_power)(_\d+)?$")
_TF1_BOOKKEEPING_OPTIMIZER = {"beta1_power": "Adam", "beta2_power": "Adam"}

# TF2 (tf.train.Checkpoint) slot names as Keras optimizers write them.
_TF2_SLOT_OPTIMIZER = {
    "m": "Adam", "v": "Adam", "vhat": "Adam", "velocity": "Adam",
    "momentum": "Momentum", "rms": "RMSProp", "mg": "RMSProp",
    "accumulator": "Adagrad", "accumulated_grad": "Adadelta",
    "accumulated_delta_var": "Adadelta", "linear": "Ftrl",
}
_TF2_STEP_NAMES = ("step/.ATTRIBUTES/VARIABLE_VALUE",
                   "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE",
                   "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")


@dataclasses.dataclass(frozen=True)
class Source:
  """Where a checkpoint is and what points at it.

  Attributes:
    kind: One of SOURCE_TF1_PREFIX, SOURCE_TF2_CHECKPOINT, SOURCE_RUN_DIR.
    prefix: The checkpoint prefix.
    meta_graph: Path of the `.meta` beside the prefix, or None.
    run_dir: The tfvae run directory, or None.
  """
  kind: str
  prefix: str
  meta_graph: str = None
  run_dir: str = None


@dataclasses.dataclass(frozen=True)
class VariableInfo:
  """One saved tensor.

  Attributes:
    name: The checkpoint key.
    shape: Tuple of ints.
    dtype: The dtype's name ("float32").
    size: Number of elements.
    kind: WEIGHT, SLOT or BOOKKEEPING.
    optimizer: The optimizer a slot or bookkeeping variable belongs to
      ("RMSProp", "Adam", ...), or None.
    slot_of: For slots, the name of the variable they belong to.
  """
  name: str
  shape: tuple
  dtype: str
  size: int
  kind: str
  optimizer: str = None
  slot_of: str = None


@dataclasses.dataclass(frozen=True)
class CheckpointReport:
  """What a checkpoint holds.

  Attributes:
    source: The `Source` it was read from.
    format: TF1_FORMAT or TF2_FORMAT.
    variables: Tuple of `VariableInfo`, sorted by name.
    step: The recorded training step, or None.
    optimizers: Sorted tuple of the optimizer names seen.
  """
  source: Source
  format: str
  variables: tuple
  step: int = None
  optimizers: tuple = ()

  def weights(self):
    """The `VariableInfo`s of model weights."""
    return [v for v in self.variables if v.kind == WEIGHT]

  def slots(self):
    """The `VariableInfo`s of optimizer slots."""
    return [v for v in self.variables if v.kind == SLOT]


def _strip_suffix(path):
  for suffix in (".index", ".meta"):
    if path.endswith(suffix):
      return path[:-len(suffix)]
  return re.sub(r"\.data-\d{5}-of-\d{5}$", "", path)


def _latest_in(directory):
  """Returns the prefix the `checkpoint` state file of `directory` names."""
  state_file = os.path.join(directory, "checkpoint")
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError) as e:
    raise errors.TfvaeError(
        f"{state_file} is not a readable checkpoint state file") from e
  if state is None or not state.model_checkpoint_path:
    raise errors.TfvaeError(f"{state_file} names no checkpoint")
  prefix = state.model_checkpoint_path
  # TF1 state files hold absolute paths from where training ran; the
  # checkpoint beside the state file is the one meant once a directory moved.
  local = os.path.join(directory, os.path.basename(prefix))
  if tf.io.gfile.exists(local + ".index"):
    return local
  if not os.path.isabs(prefix):
    prefix = os.path.join(directory, prefix)
  if not tf.io.gfile.exists(prefix + ".index"):
    raise errors.TfvaeError(
        f"{state_file} names {prefix}, but {prefix}.index does not exist")
  return prefix


def resolve(path):
  """Finds the checkpoint `path` points at.

  Args:
    path: A checkpoint prefix, a directory with a `checkpoint` state file, or
      a tfvae run directory.

  Returns:
    A `Source`.

  Raises:
    errors.TfvaeError: Naming the missing file if there is no checkpoint.
  """
  if not path:
    raise errors.TfvaeError("no checkpoint path given")
  if os.path.isdir(path):
    ckpt_dir = os.path.join(path, "ckpt")
    if (os.path.isfile(os.path.join(path, "config.json"))
        and os.path.isdir(ckpt_dir)):
      return Source(SOURCE_RUN_DIR, _latest_in(ckpt_dir), run_dir=path)
    if os.path.isfile(os.path.join(path, "checkpoint")):
      prefix = _latest_in(path)
    else:
      raise errors.TfvaeError(
          f"{path} is a directory without a 'checkpoint' state file or a "
          "tfvae run directory (config.json + ckpt/); pass a checkpoint prefix")
  else:
    prefix = _strip_suffix(path)
    if not os.path.isfile(prefix + ".index"):
      raise errors.TfvaeError(
          f"checkpoint {prefix}.index does not exist (pass a checkpoint "
          "prefix such as DIR/model, or its directory)")
  reader = _reader(prefix)
  if _OBJECT_GRAPH_KEY in reader.get_variable_to_shape_map():
    return Source(SOURCE_TF2_CHECKPOINT, prefix)
  meta = prefix + ".meta"
  return Source(SOURCE_TF1_PREFIX, prefix,
                meta_graph=meta if os.path.isfile(meta) else None)


def _data_files(prefix):
  return sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))


def _reader(prefix):
  try:
    return tf.train.load_checkpoint(prefix)
  except Exception as e:  # pylint: disable=broad-except
    missing = [f for f in _data_files(prefix)] or [prefix + ".data-*"]
    if not _data_files(prefix):
      raise errors.TfvaeError(
          f"checkpoint data file {missing[0]} does not exist") from e
    raise errors.TfvaeError(
        f"checkpoint index {prefix}.index is damaged or not a checkpoint "
        f"index ({first_line(e)})") from e


def _classify_tf1(name):
  match = _TF1_BOOKKEEPING_RE.match(name)
  if match:
    return BOOKKEEPING, _TF1_BOOKKEEPING_OPTIMIZER.get(match.group(2)), None
  match = _TF1_SLOT_RE.match(name)
  if match:
    opt = match.group("opt")
    return SLOT, _TF1_OPTIMIZER_NAMES.get(opt, opt), match.group("var")
  return WEIGHT, None, None


def _classify_tf2(name):
  if name == _OBJECT_GRAPH_KEY or name.startswith("save_counter/"):
    return BOOKKEEPING, None, None
  if name in _TF2_STEP_NAMES:
    return BOOKKEEPING, None, None
  if "/.OPTIMIZER_SLOT/" in name:
    owner, slot_path = name.split("/.OPTIMIZER_SLOT/", 1)
    parts = slot_path.split("/")
    slot = parts[1] if len(parts) > 1 else parts[0]
    return SLOT, _TF2_SLOT_OPTIMIZER.get(slot, "unknown"), owner
  if name.startswith("optimizer/") or "/optimizer/" in name:
    return (SLOT if "/_variables/" in name else BOOKKEEPING), None, None
  return WEIGHT, None, None


def _read_step(reader, names):
  candidates = [n for n in names if _TF1_BOOKKEEPING_RE.match(n)
                and n.rsplit("/", 1)[-1].startswith("global_step")]
  candidates += [n for n in _TF2_STEP_NAMES if n in names]
  for name in candidates:
    try:
      value = np.asarray(reader.get_tensor(name))
    except tf.errors.OpError:
      continue
    if value.size == 1 and np.issubdtype(value.dtype, np.integer):
      return int(value.reshape(()))
  return None


def inspect(path):
  """Lists and classifies the variables of the checkpoint at `path`.

  Args:
    path: Anything `resolve` accepts.

  Returns:
    A `CheckpointReport`.

  Raises:
    errors.TfvaeError: If there is no checkpoint or its index is damaged.
  """
  source = path if isinstance(path, Source) else resolve(path)
  reader = _reader(source.prefix)
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  tf2 = _OBJECT_GRAPH_KEY in shapes
  classify = _classify_tf2 if tf2 else _classify_tf1
  variables = []
  for name in sorted(shapes):
    shape = tuple(int(d) for d in shapes[name])
    kind, optimizer, slot_of = classify(name)
    variables.append(VariableInfo(
        name=name, shape=shape, dtype=dtypes[name].name,
        size=int(np.prod(shape, dtype=np.int64)), kind=kind,
        optimizer=optimizer, slot_of=slot_of))
  optimizers = sorted({v.optimizer for v in variables
                       if v.optimizer and v.optimizer != "unknown"})
  return CheckpointReport(
      source=source, format=TF2_FORMAT if tf2 else TF1_FORMAT,
      variables=tuple(variables), step=_read_step(reader, set(shapes)),
      optimizers=tuple(optimizers))


def read_all(path, names=None):
  """Reads tensors, which checks every CRC of the data files.

  Args:
    path: Anything `resolve` accepts, or a `Source`.
    names: Keys to read; None reads every tensor.

  Returns:
    Dict name -> numpy array.

  Raises:
    errors.TfvaeError: Naming the data file if a tensor cannot be read (a
      truncated or corrupted `.data` file) or a requested key is missing.
  """
  source = path if isinstance(path, Source) else resolve(path)
  reader = _reader(source.prefix)
  available = reader.get_variable_to_shape_map()
  if names is None:
    names = sorted(n for n in available if n != _OBJECT_GRAPH_KEY)
  values = {}
  for name in names:
    if name not in available:
      raise errors.TfvaeError(
          f"variable {name} is not in checkpoint {source.prefix}")
    try:
      values[name] = reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except
      # The reader raises OpError, IndexError or ValueError for bad bytes.
      if not _data_files(source.prefix):
        raise errors.TfvaeError(
            f"checkpoint data file {source.prefix}.data-00000-of-00001 does "
            "not exist") from e
      data = ", ".join(_data_files(source.prefix))
      raise errors.TfvaeError(
          f"checkpoint data file {data} is truncated or corrupted: variable "
          f"{name} cannot be read ({first_line(e)})") from e
  return values


def verify(path):
  """Reads every tensor of a checkpoint; returns its `CheckpointReport`."""
  report = inspect(path)
  read_all(report.source)
  return report
