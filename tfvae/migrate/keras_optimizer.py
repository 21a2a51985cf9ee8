"""A Keras 2 optimizer's state, read from a `model.save` HDF5 file.

`model.save("vae.h5")` stores the compiled optimizer beside the model: its
class and hyper-parameters in the `training_config` attribute (JSON) and
its variables in the `optimizer_weights` group, named after the model's
weights. tf_keras' optimizers name them `Adam/m/LAYER/kernel:0`,
`Adam/v/...`, `RMSprop/velocity/...` and `iteration:0`; the legacy ones
(graph mode, TF 2.0-2.10) `training/Adam/LAYER/kernel/m:0`,
`training/RMSprop/LAYER/kernel/rms:0` and `training/Adam/iter:0`. Either
becomes tfvae's optimizer state (tf_keras' Adam and RMSprop, whose slot
lists `_momentums` / `_velocities` hold m / v, and rms): `read_optimizer`
reads it as data and `slots_for` lays it onto the native variables, in the
form `run_dir.write_run_dir` takes.
"""
import dataclasses
import json

import h5py
import numpy as np

from tfvae.migrate import keras_h5

# Keras optimizer class -> tfvae optimizer.
_OPTIMIZERS = {"adam": "adam", "rmsprop": "rmsprop"}
# tf_keras slot list of the tfvae optimizer -> Keras slot names (tf_keras',
# legacy).
_SLOTS = {"adam": {"_momentums": ("m",), "_velocities": ("v",)},
          "rmsprop": {"_velocities": ("velocity", "rms")}}
# Hyper-parameters tfvae's optimizers fix (tf_keras' defaults), which a
# Keras optimizer may have set otherwise (but those in `_CARRIED`).
_FIXED = {"adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                   "amsgrad": False},
          "rmsprop": {"rho": 0.9, "epsilon": 1e-7, "momentum": 0.0,
                      "centered": False}}
# Hyper-parameters carried into the run's config (`config.Config` fields).
_CARRIED = {"adam": {"epsilon": "optimizer_epsilon"},
            "rmsprop": {"rho": "optimizer_rho",
                        "epsilon": "optimizer_epsilon"}}
_STEP_NAMES = ("iteration", "iter", "iterations")


@dataclasses.dataclass
class KerasOptimizer:
  """A Keras optimizer as saved.

  Attributes:
    path: The HDF5 file.
    keras_class: Its class name ("Adam", "RMSprop", "SGD", ...).
    name: The tfvae optimizer ("adam", "rmsprop") or None.
    hyper: Its saved hyper-parameters.
    slots: {(weight name "LAYER/kernel", slot name "m"): array}.
    iterations: Steps taken, or None.
  """
  path: str
  keras_class: str
  name: str
  hyper: dict
  slots: dict
  iterations: int = None


def read_optimizer(path, weight_names):
  """Reads the optimizer `model.save` stored in `path`, as data.

  Args:
    path: An HDF5 file of `model.save`.
    weight_names: The model's weight names ("LAYER/kernel"), to which the
      slots are matched.

  Returns:
    A `KerasOptimizer`, or None if the file holds no compiled optimizer.
  """
  with h5py.File(path, "r") as f:
    if "training_config" not in f.attrs:
      return None
    config = json.loads(keras_h5._text(f.attrs["training_config"]))  # pylint: disable=protected-access
    optimizer = config.get("optimizer_config") or {}
    keras_class = optimizer.get("class_name", "?").split(">")[-1]
    hyper = dict(optimizer.get("config") or {})
    slots = {}
    iterations = None
    if "optimizer_weights" in f:
      found = []
      f["optimizer_weights"].visititems(
          lambda n, item: found.append((n, np.asarray(item)))
          if isinstance(item, h5py.Dataset) else None)
      for name, value in found:
        parts = name.split(":")[0].split("/")
        if parts[-1] in _STEP_NAMES:
          iterations = int(value)
          continue
        for i in range(len(parts) - 1):
          weight = f"{parts[i]}/{parts[i + 1]}"
          if weight in weight_names:
            rest = [p for p in parts[:i] + parts[i + 2:]
                    if p not in ("training", keras_class, hyper.get("name"))]
            slots[(weight, "/".join(rest))] = value
            break
  return KerasOptimizer(path, keras_class,
                        _OPTIMIZERS.get(keras_class.lower()), hyper, slots,
                        iterations)


def config_fields(optimizer):
  """({config field: value}, report lines) the run takes from it."""
  if optimizer is None:
    return {}, []
  if optimizer.name is None:
    return {}, [f"Optimizer: Keras {optimizer.keras_class} has no tfvae "
                "counterpart; the run trains with adam"]
  fields = {"optimizer": optimizer.name}
  rate = optimizer.hyper.get("learning_rate", optimizer.hyper.get("lr"))
  if isinstance(rate, (int, float)) and rate > 0:
    fields["learning_rate"] = float(np.float32(rate))
  lines = [f"Optimizer: Keras {optimizer.keras_class} -> {optimizer.name}"
           + (f", learning rate {fields['learning_rate']:g}"
              if "learning_rate" in fields else
              " (its learning rate is a schedule: the run's default)")]
  for key, field in _CARRIED[optimizer.name].items():
    value = optimizer.hyper.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      fields[field] = float(f"{float(value):.7g}")  # float32 digits
      lines.append(f"Optimizer: Keras {key}={value:g} -> {field}")
  for key, fixed in _FIXED[optimizer.name].items():
    value = optimizer.hyper.get(key)
    if key in _CARRIED[optimizer.name]:
      continue
    if value is not None and not np.isclose(float(value), float(fixed),
                                            rtol=1e-6, atol=0):
      lines.append(f"Optimizer: Keras {key}={value:g} is not a tfvae "
                   f"setting; the run trains with {key}={fixed:g}")
  if optimizer.hyper.get("decay"):
    lines.append(f"Optimizer: Keras decay={optimizer.hyper['decay']:g} "
                 "(a learning-rate decay) is not carried")
  return fields, lines


def slots_for(optimizer, used, derived):
  """The optimizer's slots laid onto the native variables.

  Args:
    optimizer: A `KerasOptimizer` of a tfvae optimizer.
    used: {native variable name: [Keras weight names]} (`load_weights`);
      several names are concatenated on the last axis (the two heads).
    derived: `KerasModel.derived`: weights transposed (their slots are,
      alike) or folded (whose slots have no counterpart).

  Returns:
    {"slots": {(slot list attribute, native variable name): array},
     "iterations": int or None}, as `run_dir.write_run_dir` takes.

  Raises:
    keras_h5.KerasModelError: Naming the file and what is missing.
  """
  path = optimizer.path
  if optimizer.name is None:
    raise keras_h5.KerasModelError(
        f"--with_optimizer_state: {path} was trained with Keras "
        f"{optimizer.keras_class}; only Adam and RMSprop have tfvae "
        "counterparts")
  for key, fixed in (("centered", False), ("momentum", 0.0),
                     ("amsgrad", False)):
    if optimizer.hyper.get(key) not in (None, fixed):
      raise keras_h5.KerasModelError(
          f"--with_optimizer_state: {path}'s {optimizer.keras_class} has "
          f"{key}={optimizer.hyper[key]}, whose state tfvae's optimizer "
          "does not keep")
  if not optimizer.slots:
    raise keras_h5.KerasModelError(
        f"--with_optimizer_state: {path} holds no optimizer weights matched "
        "to its layers (saved without the optimizer, or by a Keras that "
        "names them Variable_N)")
  slots = {}
  missing = []
  for native, sources in used.items():
    for attribute, names in _SLOTS[optimizer.name].items():
      parts = []
      for source in sources:
        if source is None:
          parts.append(None)
          continue
        how = None
        if source in derived:
          source, how = derived[source]
          if "folded" in how:
            raise keras_h5.KerasModelError(
                f"--with_optimizer_state: {path}: the weight {source} had "
                f"{how.split(' ')[0]} folded into it; its optimizer state "
                "has no counterpart (drop the flag)")
        value = next((optimizer.slots[(source, n)] for n in names
                      if (source, n) in optimizer.slots), None)
        if value is None:
          missing.append(f"{source} ({'/'.join(names)})")
          continue
        parts.append(keras_h5.transposed_as_conv(value) if how else value)
      present = [p for p in parts if p is not None]
      if not present:
        continue
      if len(present) != len([s for s in sources if s is not None]):
        continue
      slots[(attribute, native)] = (present[0] if len(present) == 1
                                    else np.concatenate(present, -1))
  if missing:
    raise keras_h5.KerasModelError(
        f"--with_optimizer_state: {path} lacks the optimizer slots "
        f"{', '.join(missing[:4])}")
  if not slots:
    raise keras_h5.KerasModelError(
        f"--with_optimizer_state: {path} holds no {optimizer.keras_class} "
        "slots of the migrated layers")
  return {"slots": slots, "iterations": optimizer.iterations}
