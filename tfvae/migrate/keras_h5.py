"""Keras 2 (tf_keras) VAEs from HDF5 files or SavedModels, never run.

`model.save("vae.h5")` stores the model's configuration as JSON (the
`model_config` attribute) beside its weights; `model.save_weights` stores the
weights alone, and the configuration then comes from `model.to_json()` in a
file of its own; `model.save(DIR, save_format="tf")` stores it in
`keras_metadata.pb` beside a TF2 checkpoint. All are read as data (h5py,
`json`, protocol buffers, the checkpoint reader): no layer is ever
deserialised, and a `Lambda` layer's function (marshalled Python bytecode,
which would run on loading) is never looked at. The sampling `Lambda` is
known by its place instead: it takes the posterior mean and the raw scale
from two `Dense` layers, and its parametrisation is read from the raw
layer's name (`z_log_var`: log-variance; `z_log_sigma`, `log_std`: log
scale) or given by the user.

`read_keras` returns the same `anatomy.Anatomy` a TF1 graph gives (its
tensors None; weights named by their HDF5 paths) and the arrays, and
`reference_values` recomputes the VAE in numpy from them for verification.
"""
import dataclasses
import json
import os

import h5py
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tf_keras.protobuf import saved_metadata_pb2

from tfvae import errors
from tfvae.migrate import anatomy as anatomy_lib
from tfvae.migrate import reference

# Keras activation names native models have (the rest is refused).
_ACTIVATIONS = ("tanh", "relu", "elu", "selu", "softplus", "sigmoid", "gelu",
                "swish", "linear")
_GENERATOR_ROUTE = "; it has no native tfvae counterpart"
_KERAS_METADATA = "keras_metadata.pb"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Layers a VAE's encoder and decoder path may hold besides Dense ones: the
# identity at inference (dropout, noise) or a change of shape only.
_PASSIVE = ("InputLayer", "Flatten", "Reshape", "Dropout", "AlphaDropout",
            "GaussianDropout", "GaussianNoise", "SpatialDropout1D",
            "SpatialDropout2D", "ActivityRegularization")
# Keras' own layers of two inputs, none of which samples.
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
           "Concatenate", "Dot", "TFOpLambda", "SlicingOpLambda", "AddLoss",
           "AddMetric", "Functional", "Model", "Sequential")
# The classic Keras conv VAE's encoder, which `nets.ConvEncoderNet` is (3x3
# kernels, one activation); other conv encoders become `encoder_conv_layers`:
# (filters, stride) of its convolutions, then the dense layer's width.
_CONV_ENCODER = ((32, 1), (64, 2), (64, 1), (64, 1))
_CONV_ENCODER_DENSE = 32
# The arrays read of each layer (Dense, convolutions, BatchNormalization).
_ARRAYS = ("kernel", "bias", "gamma", "beta", "moving_mean",
           "moving_variance")


class KerasModelError(errors.TfvaeError):
  """A Keras file has no native tfvae counterpart, or cannot be read."""


def is_hdf5(path):
  """Whether `path` is an HDF5 file (by its signature)."""
  if not os.path.isfile(path):
    return False
  with open(path, "rb") as f:
    return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class _Layers:
  """The layers of a functional config, nested models flattened by name."""

  def __init__(self, config, path):
    self.path = path
    self.layers = {}
    self.models = {}
    self._add(config)
    self.root = config["config"]["name"]
    # (Dense layer, BatchNormalization layer) pairs `_chain` folded.
    self.folds = []

  def add_model(self, config):
    """Adds a second file's model (a decoder saved on its own)."""
    self._add(config)

  def _add(self, model):
    if model.get("class_name") not in ("Functional", "Model"):
      raise KerasModelError(
          f"{self.path}: the model is a {model.get('class_name')}, not a "
          "functional Keras model; only functional VAEs are read")
    config = model["config"]
    self.models[config["name"]] = config
    for layer in config["layers"]:
      if layer["class_name"] in ("Functional", "Model"):
        self._add(layer)
      name = layer.get("name") or layer["config"]["name"]
      self.layers[name] = layer

  def inbound(self, name):
    """Names of the layers feeding `name` (its first call)."""
    nodes = self.layers[name].get("inbound_nodes") or []
    if not nodes:
      return []
    node = nodes[0]
    if node and isinstance(node[0], str):  # TFOpLambda: [x, 0, 0, kwargs].
      refs = [v[0] for v in (node[3] if len(node) > 3 else {}).values()
              if isinstance(v, list) and v and isinstance(v[0], str)]
      return [node[0], *refs]
    if isinstance(node, dict):  # Keras 3 style.
      args = node.get("args", [])
      return [a["config"]["keras_history"][0] for a in _flat(args)
              if isinstance(a, dict) and "config" in a]
    return [entry[0] for entry in node]

  def consumers(self, name):
    """Names of the layers `name` feeds."""
    return [n for n in self.layers if name in self.inbound(n)]

  def outputs(self, model):
    return [entry[0] for entry in self.models[model]["output_layers"]]

  def inputs(self, model):
    return [entry[0] for entry in self.models[model]["input_layers"]]


def _flat(items):
  for item in items:
    if isinstance(item, list):
      yield from _flat(item)
    else:
      yield item


def _conv(layers, name):
  """A Conv2D / Conv2DTranspose layer as an `anatomy.Dense` of its kind."""
  layer = layers.layers[name]
  config = layer["config"]
  kernel = list(config.get("kernel_size", []))
  strides = list(config.get("strides", []))
  activation = config.get("activation", "linear")
  if (len(set(kernel)) != 1 or config.get("padding") != "same"
      or len(set(strides)) != 1 or config.get("dilation_rate", [1, 1])
      not in ([1, 1], (1, 1), 1)
      or config.get("output_padding") is not None
      or config.get("data_format", "channels_last") != "channels_last"
      or activation not in _ACTIVATIONS):
    raise KerasModelError(
        f"{layers.path}: layer {name} ({layer['class_name']}) is not a "
        "square-kernel 'same' channels-last convolution (no dilation or "
        "output padding) with a native activation, as native conv nets have"
        f"{_GENERATOR_ROUTE}")
  kind = "conv" if layer["class_name"] == "Conv2D" else "conv_transpose"
  return anatomy_lib.Dense(
      weight=f"{name}/kernel", bias=(f"{name}/bias"
                                     if config.get("use_bias", True)
                                     else None),
      activation=activation, units=int(config["filters"]), kind=kind,
      stride=int(strides[0]), kernel=int(kernel[0]))


def _dense(layers, name):
  layer = layers.layers[name]
  if layer["class_name"] in ("Conv2D", "Conv2DTranspose"):
    return _conv(layers, name)
  if layer["class_name"] != "Dense":
    raise KerasModelError(
        f"{layers.path}: layer {name} ({layer['class_name']}) is not a Dense "
        f"layer, which native MLP VAEs are built of{_GENERATOR_ROUTE}")
  config = layer["config"]
  activation = _activation_name(layers, name)
  return anatomy_lib.Dense(
      weight=f"{name}/kernel", bias=(f"{name}/bias"
                                     if config.get("use_bias", True)
                                     else None),
      activation=activation, units=int(config["units"]))


def _activation_name(layers, name):
  activation = layers.layers[name]["config"].get("activation", "linear")
  if isinstance(activation, dict):
    activation = activation.get("config", {}).get("name", repr(activation))
  if activation not in _ACTIVATIONS:
    raise KerasModelError(
        f"{layers.path}: layer {name} has activation {activation!r}, which "
        f"native models do not have{_GENERATOR_ROUTE}")
  return activation


def _chain(layers, top, stop):
  """Dense layers from a layer in `stop` (exclusive) up to `top`.

  An `Activation` layer becomes the activation of the linear layer below
  it; a `BatchNormalization` between a linear layer and its activation is
  folded into that layer's weights (its moving statistics: what the model
  computes at inference), recorded in `layers.folds`.
  """
  chain = []
  name = top
  activation = None
  norm = None
  while name not in stop:
    kind = layers.layers[name]["class_name"]
    if kind in _PASSIVE or kind in ("Activation", "BatchNormalization"):
      if kind == "Activation":
        if activation or norm:
          raise KerasModelError(
              f"{layers.path}: layer {name} (Activation) is followed by "
              f"another activation or normalisation{_GENERATOR_ROUTE}")
        activation = _activation_name(layers, name)
      elif kind == "BatchNormalization":
        if norm:
          raise KerasModelError(
              f"{layers.path}: layers {name} and {norm} "
              f"(BatchNormalization) follow each other{_GENERATOR_ROUTE}")
        norm = name
      feeding = layers.inbound(name)
      if not feeding:
        raise KerasModelError(
            f"{layers.path}: layer {top} is not reached from {sorted(stop)}")
      name = feeding[0]
      continue
    dense = _dense(layers, name)
    if (activation or norm) and dense.activation != "linear":
      what = norm or "the Activation above it"
      raise KerasModelError(
          f"{layers.path}: layer {what} ({'BatchNormalization' if norm else 'Activation'}) "
          f"follows {name}, which is already activated "
          f"({dense.activation}); only a normalisation between a linear "
          f"layer and its activation can be folded{_GENERATOR_ROUTE}")
    if norm:
      if dense.kind != "dense":
        raise KerasModelError(
            f"{layers.path}: layer {norm} (BatchNormalization) follows the "
            f"convolution {name}; only one after a Dense layer is folded"
            f"{_GENERATOR_ROUTE}")
      layers.folds.append((name, norm))
      dense = dataclasses.replace(dense, weight=f"{name}/kernel*{norm}",
                                  bias=f"{name}/bias*{norm}")
    if activation:
      dense = dataclasses.replace(dense, activation=activation)
    activation = norm = None
    chain.append(dense)
    feeding = layers.inbound(name)
    if len(feeding) != 1:
      raise KerasModelError(
          f"{layers.path}: layer {name} takes {len(feeding)} inputs; native "
          f"MLPs chain single-input layers{_GENERATOR_ROUTE}")
    name = feeding[0]
  return chain[::-1]


def _input_layers(layers):
  return {n for n, l in layers.layers.items()
          if l["class_name"] == "InputLayer"}


def _scale_from_name(name):
  lowered = name.lower()
  if "log_var" in lowered or "logvar" in lowered:
    return "log_variance"
  if any(k in lowered for k in ("log_sigma", "log_std", "logstd",
                                "log_scale")):
    return "log_scale"
  return None


def _sampler(layers, owners):
  """(sampling layer name, loc layer, raw scale layer).

  The sampling layer is known by its place, never by running it: a layer
  (a `Lambda` or a class of the user's own, whatever its code) fed by two
  `Dense` heads of one width on one input, and holding no weights.
  """
  found = []
  for name, layer in layers.layers.items():
    feeding = layers.inbound(name)
    if layer["class_name"] in _MERGES or len(feeding) != 2:
      continue
    heads = [layers.layers.get(f) for f in feeding]
    if (all(h and h["class_name"] == "Dense" for h in heads)
        and heads[0]["config"].get("units") == heads[1]["config"].get(
            "units")
        and layers.inbound(feeding[0]) == layers.inbound(feeding[1])):
      found.append(name)
  if len(found) != 1:
    unknown = sorted({l["class_name"] for l in layers.layers.values()}
                     - {"InputLayer", "Dense", "Lambda", *_MERGES, *_PASSIVE,
                        "Conv2D", "Conv2DTranspose", "Activation",
                        "BatchNormalization"})
    raise KerasModelError(
        f"{layers.path}: expected one sampling layer taking the posterior "
        "mean and scale from two Dense heads of one width, found "
        f"{len(found)}{' (' + ', '.join(found) + ')' if found else ''}"
        + (f" (other layers: {', '.join(unknown)})" if unknown else "")
        + _GENERATOR_ROUTE)
  name = found[0]
  if name in owners:
    raise KerasModelError(
        f"{layers.path}: the sampling layer {name} "
        f"({layers.layers[name]['class_name']}) holds weights; a sampler "
        f"with parameters is not a native posterior{_GENERATOR_ROUTE}")
  loc, raw = layers.inbound(name)
  return name, loc, raw


def is_keras_savedmodel(path):
  """Whether `path` is a Keras 2 SavedModel directory."""
  return os.path.isfile(os.path.join(path, _KERAS_METADATA))


def _metadata_nodes(path):
  metadata = saved_metadata_pb2.SavedMetadata()
  with open(os.path.join(path, _KERAS_METADATA), "rb") as f:
    metadata.ParseFromString(f.read())
  return {n.node_path: json.loads(n.metadata) for n in metadata.nodes}


def _savedmodel_parts(path):
  """(encoder node, decoder node) of a subclassed keras.Model's SavedModel
  (keras.io's `VAE(encoder, decoder)`: the root has no configuration, its
  functional children do), or None."""
  nodes = _metadata_nodes(path)
  if (nodes.get("root") or {}).get("config"):
    return None
  children = {p: m for p, m in nodes.items()
              if p.count(".") == 1 and m.get("config")
              and m.get("class_name") in ("Functional", "Model")}
  found = [[p for p in children if part in p.lower()]
           for part in ("encoder", "decoder")]
  if all(len(f) == 1 for f in found):
    return found[0][0], found[1][0]
  raise KerasModelError(
      f"{path}/{_KERAS_METADATA}: the model ({nodes['root'].get('class_name')}"
      ") is subclassed, with no configuration, and has no single encoder and "
      f"decoder functional model inside (found {sorted(children)})")


def _untupled(value):
  """A SavedModel's JSON with its tuples ({"class_name": "__tuple__",
  "items": [...]}) as the lists HDF5 configurations hold."""
  if isinstance(value, dict):
    if value.get("class_name") == "__tuple__" and "items" in value:
      return [_untupled(v) for v in value["items"]]
    return {k: _untupled(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_untupled(v) for v in value]
  return value


def _read_savedmodel(path, part="root"):
  """(config, {layer/kernel: array}, step, owners) of a Keras SavedModel
  directory, or of its functional model at node `part`.

  The configuration is the model's JSON in `keras_metadata.pb` (a protocol
  buffer, data); each layer's arrays are found through the checkpoint's
  object graph, from the layer's path in the metadata.
  """
  nodes = _metadata_nodes(path)
  root = nodes.get(part)
  if not root or not root.get("config"):
    raise KerasModelError(f"{path}/{_KERAS_METADATA} has no model "
                          "configuration")
  config = _untupled({"class_name": root["class_name"],
                      "config": root["config"]})
  prefix = os.path.join(path, "variables", "variables")
  try:
    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
  except (tf.errors.OpError, ValueError) as e:
    raise KerasModelError(f"{prefix} cannot be read ({e})") from e

  def node_of(node_path):
    node = 0
    for part in node_path.split(".")[1:]:
      children = {c.local_name: c.node_id
                  for c in graph.nodes[node].children}
      if part not in children:
        return None
      node = children[part]
    return node

  arrays = {}
  owners = set()
  for node_path, meta in nodes.items():
    if (meta.get("class_name") in ("Functional", "Model", "Sequential")
        or not node_path.startswith(part + ".")):
      continue
    node = node_of(node_path)
    if node is None:
      continue
    for child in graph.nodes[node].children:
      attributes = graph.nodes[child.node_id].attributes
      if attributes and attributes[0].name == "VARIABLE_VALUE":
        owners.add(meta.get("name"))
        if child.local_name in _ARRAYS:
          arrays[f"{meta['name']}/{child.local_name}"] = reader.get_tensor(
              attributes[0].checkpoint_key)
  step = None
  for key in ("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
              "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"):
    if reader.has_tensor(key):
      step = int(reader.get_tensor(key))
  return config, arrays, step, owners


def _read_h5(path, config_path):
  """(config, {layer/kernel: array}, step) of an HDF5 file."""
  try:
    handle = h5py.File(path, "r")
  except OSError as e:
    raise KerasModelError(f"{path} is not a readable HDF5 file ({e})") from e
  with handle:
    if "model_config" in handle.attrs:
      config = json.loads(_text(handle.attrs["model_config"]))
      weights_group = handle["model_weights"]
    elif config_path:
      with open(config_path) as f:
        config = json.load(f)
      weights_group = handle
    else:
      raise KerasModelError(
          f"{path} holds weights only (model.save_weights); pass the model's "
          "configuration, the JSON of model.to_json(), with --keras_config "
          "(a subclassed keras.Model has none: save its encoder and decoder "
          "models with .save and pass them, --decoder)")
    arrays = {}
    owners = set()

    def collect(name, item):
      if not isinstance(item, h5py.Dataset):
        return
      parts = name.split("/")
      if len(parts) > 1:
        owners.add(parts[-2])
      if parts[-1].split(":")[0] in _ARRAYS:
        key = f"{parts[-2]}/{parts[-1].split(':')[0]}"
        arrays.setdefault(key, np.asarray(item))
    weights_group.visititems(collect)
    step = None
    if "optimizer_weights" in handle:
      steps = []
      handle["optimizer_weights"].visititems(
          lambda n, item: steps.append(int(np.asarray(item)))
          if n.split("/")[-1] in ("iteration:0", "iter:0") else None)
      step = steps[0] if steps else None
  return config, arrays, step, owners


@dataclasses.dataclass
class KerasModel:
  """What `read_keras` found.

  Attributes:
    anatomy: The `anatomy.Anatomy` (tensors None; weights named
      "LAYER/kernel", folded or converted ones "LAYER/kernel*BN" and
      "LAYER/kernel^conv").
    arrays: {weight name: array}.
    step: The optimizer's step, or None.
    files: The files read (the model, or its encoder and decoder).
    derived: {derived weight name: (source weight name, what was done)}.
    gaussian_scale: The pixel scale the loss implies for a Gaussian
      likelihood, or None.
    notes: Report lines on what was inferred and how.
  """
  anatomy: anatomy_lib.Anatomy
  arrays: dict
  step: int
  files: list
  derived: dict
  gaussian_scale: float = None
  notes: list = dataclasses.field(default_factory=list)


def is_keras(path, decoder_path=None):
  """Whether `path` (with `decoder_path`) is a Keras model `read_keras`
  reads: an HDF5 file, a Keras SavedModel, or a directory holding an
  encoder and a decoder saved apart."""
  if decoder_path or is_hdf5(path) or is_keras_savedmodel(path):
    return True
  return os.path.isdir(path) and any(
      "encoder" in e.lower() and (is_hdf5(os.path.join(path, e))
                                  or is_keras_savedmodel(os.path.join(path, e)))
      for e in os.listdir(path))


def _pair_in(directory):
  """(encoder, decoder) saved apart in `directory`: the one HDF5 file or
  Keras SavedModel whose name holds "encoder" and the one "decoder"."""
  found = {"encoder": [], "decoder": []}
  for entry in sorted(os.listdir(directory)):
    full = os.path.join(directory, entry)
    if not (is_hdf5(full) or is_keras_savedmodel(full)):
      continue
    for part in found:
      if part in entry.lower():
        found[part].append(full)
  if len(found["encoder"]) == 1 and len(found["decoder"]) == 1:
    return found["encoder"][0], found["decoder"][0]
  raise KerasModelError(
      f"{directory}: expected one Keras file (HDF5 or SavedModel) named "
      f"*encoder* and one *decoder*, found {len(found['encoder'])} and "
      f"{len(found['decoder'])}")


def _load(path, config_path, part="root"):
  if is_keras_savedmodel(path):
    return _read_savedmodel(path, part)
  if not is_hdf5(path):
    raise KerasModelError(f"{path} is neither an HDF5 file nor a Keras "
                          "SavedModel directory")
  return _read_h5(path, config_path)


def _renamed(config, arrays, owners, prefix):
  """A model's configuration and arrays with every layer renamed
  PREFIX/NAME (two files saved apart may reuse layer names)."""
  text = json.dumps(config)
  names = set()

  def collect(model):
    for layer in model["config"]["layers"]:
      names.add(layer.get("name") or layer["config"]["name"])
      if layer["class_name"] in ("Functional", "Model"):
        collect(layer)
    names.add(model["config"]["name"])
  collect(config)
  data = json.loads(text)

  def rename(value):
    if isinstance(value, str) and value in names:
      return f"{prefix}/{value}"
    if isinstance(value, list):
      return [rename(v) for v in value]
    if isinstance(value, dict):
      return {k: (rename(v) if k in ("name", "config", "layers",
                                     "inbound_nodes", "input_layers",
                                     "output_layers", "args", "kwargs",
                                     "keras_history") or isinstance(v, list)
                  else v) for k, v in value.items()}
    return value
  return (rename(data),
          {f"{prefix}/{k}": v for k, v in arrays.items()},
          {f"{prefix}/{o}" for o in owners})


def _weighted_top(layers, name):
  """The layer with weights that `name` (an output) shows, through
  passive layers, an `Activation` and nested models; None if none."""
  while name in layers.layers:
    kind = layers.layers[name]["class_name"]
    if kind in ("Dense", "Conv2D", "Conv2DTranspose"):
      return name
    if kind in ("Functional", "Model"):
      name = layers.outputs(name)[0]
    elif kind in _PASSIVE or kind in ("Activation", "BatchNormalization"):
      feeding = layers.inbound(name)
      if not feeding:
        return None
      name = feeding[0]
    else:
      return None
  return None


def _decoder_top(layers, sampler, heads):
  """The decoder's top layer (its output, maybe an `Activation` or
  `Reshape` above the last weighted layer)."""
  inner = _containing(layers, sampler)
  nested = [m for m in layers.models
            if m not in inner and m != layers.root
            and _weighted_top(layers, layers.outputs(m)[0])]
  if len(nested) == 1:
    return layers.outputs(nested[0])[0]
  if len(nested) > 1:
    raise KerasModelError(
        f"{layers.path}: found {len(nested)} decoder models ({', '.join(nested)}"
        ", functional models apart from the encoder); expected one")
  # One model throughout (the 2016 Keras blog): the output that is not a
  # head and is reached from the sampler.
  for top in layers.outputs(layers.root):
    if top in (sampler, *heads) or not _weighted_top(layers, top):
      continue
    name = top
    while name != sampler:
      feeding = layers.inbound(name)
      if not feeding:
        break
      name = feeding[0]
    if name == sampler:
      return top
  raise KerasModelError(
      f"{layers.path}: no decoder found (a model or output computed from the "
      f"sampling layer {sampler}); for an encoder saved apart pass its "
      "decoder with --decoder, or a directory holding both")


def _call_args(layers, name):
  """A TFOpLambda's (function, [input layers], {kwarg: constant})."""
  layer = layers.layers[name]
  node = (layer.get("inbound_nodes") or [[]])[0]
  kwargs = node[3] if len(node) > 3 and isinstance(node[3], dict) else {}
  constants = {k: v for k, v in kwargs.items() if not isinstance(v, list)}
  if node and node[0] == "_CONSTANT_VALUE":  # 2 * r: x is the constant.
    constants["x"] = node[2]
  inputs = [n for n in layers.inbound(name) if n != "_CONSTANT_VALUE"]
  return layer["config"].get("function"), inputs, constants


def _factor(constants):
  """The number a TFOpLambda multiplies its layer input by, or None."""
  for key in ("y", "x"):
    if isinstance(constants.get(key), (int, float)) and not isinstance(
        constants.get(key), bool):
      return float(constants[key])
  return None


def _ops(layers):
  return [n for n, l in layers.layers.items()
          if l["class_name"] == "TFOpLambda"]


def _scale_from_loss(layers, raw):
  """The posterior parametrisation the add_loss KL term shows, read from
  its TFOpLambda layers (data): exp(r) is a variance (r a log-variance),
  exp(2 r) or exp(r)^2 one with r a log-scale; None if not shown."""
  for name in _ops(layers):
    function, inputs, constants = _call_args(layers, name)
    if function != "math.exp" or not inputs:
      continue
    source = inputs[0]
    if source == raw:
      squared = any(_call_args(layers, c)[0] in ("math.square",)
                    for c in layers.consumers(name) if c in _ops(layers))
      return "log_scale" if squared else "log_variance"
    if source in _ops(layers):
      f, ins, c = _call_args(layers, source)
      if (f in ("math.multiply", "__operators__.mul") and raw in ins
          and _factor(c) == 2.0):
        return "log_scale"
  return None


def _reconstruction_from_loss(layers, pixels):
  """("gaussian", a) if the add_loss term is a * sum of squared errors
  (a None where its weight is not read), ("bernoulli", None) for a binary
  cross-entropy, (None, None) if the loss shows neither."""
  ops = _ops(layers)
  for name in ops:
    function = _call_args(layers, name)[0] or ""
    if "binary_crossentropy" in function:
      return "bernoulli", None
    if function not in ("math.squared_difference",
                        "keras.losses.mean_squared_error",
                        "keras.metrics.mean_squared_error"):
      continue
    weight = 1.0 if function == "math.squared_difference" else 1.0 / pixels
    here = name
    while True:
      after = [c for c in layers.consumers(here) if c in ops]
      if len(after) != 1:
        return "gaussian", None
      here = after[0]
      f, _, constants = _call_args(layers, here)
      if f == "math.reduce_mean" and constants.get("axis") in (-1, 1):
        weight /= pixels
      elif f == "math.reduce_sum" and constants.get("axis") in (-1, 1):
        pass
      elif (f in ("math.multiply", "__operators__.mul")
            and _factor(constants) is not None):
        weight *= _factor(constants)
      elif (f in ("math.truediv", "__operators__.truediv")
            and isinstance(constants.get("y"), (int, float))):
        weight /= constants["y"]
      elif f in ("__operators__.add", "math.add"):
        return "gaussian", weight
      else:
        return "gaussian", None
  return None, None


def _fold(arrays, layers, dense, norm, derived):
  """Folds BatchNormalization `norm` (inference statistics) into `dense`:
  y = gamma (x W + b - mean) / sqrt(var + eps) + beta."""
  config = layers.layers[norm]["config"]
  units = arrays[f"{dense}/kernel"].shape[-1]
  get = lambda n, d: np.asarray(arrays.get(f"{norm}/{n}", np.full(units, d)),
                                np.float64)
  if config.get("axis", -1) not in (-1, 1, [-1], [1]):
    raise KerasModelError(f"{layers.path}: layer {norm} "
                          "(BatchNormalization) does not normalise the last "
                          f"axis{_GENERATOR_ROUTE}")
  factor = get("gamma", 1.0) / np.sqrt(get("moving_variance", 1.0)
                                       + float(config.get("epsilon", 1e-3)))
  bias = np.asarray(arrays.get(f"{dense}/bias", np.zeros(units)), np.float64)
  arrays[f"{dense}/kernel*{norm}"] = (
      np.asarray(arrays[f"{dense}/kernel"], np.float64) * factor)
  arrays[f"{dense}/bias*{norm}"] = (
      (bias - get("moving_mean", 0.0)) * factor + get("beta", 0.0))
  derived[f"{dense}/kernel*{norm}"] = (f"{dense}/kernel", f"{norm} folded in")
  derived[f"{dense}/bias*{norm}"] = (f"{dense}/bias", f"{norm} folded in")


def transposed_as_conv(kernel):
  """A stride-1 SAME 3x3 Conv2DTranspose kernel [k, k, out, in] as the
  Conv2D kernel [k, k, in, out] that computes the same map."""
  return np.transpose(np.asarray(kernel)[::-1, ::-1], (0, 1, 3, 2))


def read_keras(path, config_path=None, posterior_scale=None,
               decoder_path=None):
  """Reads a Keras 2 VAE saved in HDF5 or as a Keras SavedModel.

  Args:
    path: The `.h5` of `model.save` or `model.save_weights`, the
      directory of `model.save(path, save_format="tf")`, an encoder saved
      apart (with `decoder_path`), or a directory holding `*encoder*` and
      `*decoder*` files.
    config_path: `model.to_json()` output, needed for a weights-only file.
    posterior_scale: "log_variance", "log_scale" or "softplus" for the
      sampling layer; None: from the add_loss KL term, else the raw scale
      layer's name.
    decoder_path: The decoder's file when the encoder is `path`.

  Returns:
    A `KerasModel`.

  Raises:
    KerasModelError: Naming the file and the layer at fault.
  """
  if not decoder_path and os.path.isdir(path) and not is_keras_savedmodel(
      path):
    path, decoder_path = _pair_in(path)
  parts = ("root", "root")
  if not decoder_path and is_keras_savedmodel(path):
    found = _savedmodel_parts(path)
    if found:
      parts, decoder_path = found, path
  config, arrays, step, owners = _load(path, config_path, parts[0])
  files = [path]
  label = path
  if decoder_path:
    files.append(decoder_path)
    label = (f"{path} + {decoder_path}" if decoder_path != path
             else f"{path} ({' + '.join(parts)})")
    d_config, d_arrays, _, d_owners = _load(decoder_path, None, parts[1])
    d_config, d_arrays, d_owners = _renamed(d_config, d_arrays, d_owners,
                                            "decoder")
    arrays.update(d_arrays)
    owners |= d_owners
  layers = _Layers(config, label)
  if decoder_path:
    layers.add_model(d_config)
  notes = []
  lam, loc_name, raw_name = _sampler(layers, owners)
  scale = posterior_scale
  if scale:
    notes.append(f"Posterior scale: {scale}, as --posterior_scale says")
  else:
    scale = _scale_from_loss(layers, raw_name)
    if scale:
      notes.append(f"Posterior scale: {scale}, read from the add_loss KL "
                   f"term (its exp of {raw_name})")
    else:
      scale = _scale_from_name(raw_name)
      if scale:
        notes.append(f"Posterior scale: {scale}, from the layer name "
                     f"{raw_name}")
  if scale is None:
    raise KerasModelError(
        f"{label}: the sampling layer {lam} takes {loc_name} and {raw_name}; "
        "its function is code and is not read, and neither an add_loss KL "
        f"term nor the name {raw_name} tells the parametrisation; pass "
        "--posterior_scale=log_variance (z = mean + exp(r / 2) * eps), "
        "log_scale (exp(r)) or softplus")
  inputs = _input_layers(layers)
  loc_head = _dense(layers, loc_name)
  scale_head = _dense(layers, raw_name)
  trunk_top = layers.inbound(loc_name)[0]
  encoder = _chain(layers, trunk_top, inputs)
  start = trunk_top
  while layers.layers[start]["class_name"] != "InputLayer":
    start = layers.inbound(start)[0]
  batch_shape = layers.layers[start]["config"].get("batch_input_shape") or (
      layers.layers[start]["config"].get("batch_shape"))
  top = _decoder_top(layers, lam, (loc_name, raw_name))
  decoder = _chain(layers, top, inputs | {lam})
  derived = {}
  for dense, norm in layers.folds:
    _fold(arrays, layers, dense, norm, derived)
  last = decoder[-1]
  if last.activation not in ("sigmoid", "linear"):
    raise KerasModelError(
        f"{label}: the decoder's output layer {last.weight.split('/')[0]} has "
        f"activation {last.activation}; native likelihoods take a sigmoid "
        "(Bernoulli, Gaussian mean) or linear (Gaussian mean) output")
  if isinstance(batch_shape, dict):  # A SavedModel's tuple: {"items": ...}.
    batch_shape = batch_shape.get("items", [])
  pixels = int(np.prod([d for d in batch_shape[1:]]))
  reconstruction, weight = _reconstruction_from_loss(layers, pixels)
  gaussian_scale = None
  if reconstruction == "gaussian":
    if not weight or weight <= 0:
      raise KerasModelError(
          f"{label}: the add_loss reconstruction term is a squared error "
          "whose weight is not read from its layers; the Gaussian's scale is "
          f"unknown{_GENERATOR_ROUTE}")
    gaussian_scale = float(np.sqrt(0.5 / weight))
    likelihood = ("gaussian" if last.activation == "sigmoid"
                  else "gaussian_identity")
    notes.append(f"Likelihood: {likelihood}, read from the add_loss term "
                 f"{weight:g} * sum (x - mean)^2 = -log N(x | mean, "
                 f"{gaussian_scale:.6g}^2) + const")
  else:
    likelihood = ("bernoulli" if last.activation == "sigmoid"
                  else "gaussian_identity")
    if likelihood == "gaussian_identity":
      raise KerasModelError(
          f"{label}: the decoder's output {last.weight.split('/')[0]} is "
          "linear and no squared-error add_loss term tells the Gaussian's "
          f"scale{_GENERATOR_ROUTE}")
  decoder[-1] = dataclasses.replace(last, activation="linear")
  if not encoder:
    raise KerasModelError(f"{label}: the encoder has no hidden Dense layer")
  if any(d.activation == "linear" for d in encoder + decoder[:-1]):
    raise KerasModelError(f"{label}: a hidden Dense layer has no activation; "
                          "native MLPs activate every hidden layer")
  side = int(round(pixels ** 0.5))
  if len(batch_shape) == 4:
    image_shape = tuple(int(d) for d in batch_shape[1:])
  elif side * side == pixels:
    image_shape = (side, side, 1)
  else:
    raise KerasModelError(f"{label}: input of {pixels} values is not a "
                          "square image")
  conv_encoder = _conv_encoder(label, encoder)
  first_map = _decoder_map(label, layers, decoder, image_shape)
  classic_decoder = first_map is not None and _is_classic_decoder(
      decoder, first_map, image_shape)
  classic = conv_encoder != "general" and (first_map is None
                                           or classic_decoder)
  encoder_conv_layers = decoder_conv_layers = decoder_conv = None
  if classic and first_map is not None:
    last = decoder[-1]
    if last.kind == "conv_transpose":
      name = last.weight.split("/kernel")[0]
      arrays[f"{name}/kernel^conv"] = transposed_as_conv(arrays[last.weight])
      derived[f"{name}/kernel^conv"] = (last.weight, "transposed to a conv")
      decoder[-1] = dataclasses.replace(last, weight=f"{name}/kernel^conv",
                                        kind="conv")
      notes.append(f"Decoder output {name}: a stride-1 Conv2DTranspose, "
                   "migrated as the Conv2D of the flipped kernel (the same "
                   "map)")
    decoder_conv = (int(first_map[-1]), decoder[1].units, image_shape)
  elif not classic:
    if conv_encoder:
      encoder_conv_layers = anatomy_lib.layers_text(encoder)
    if first_map is not None:
      decoder_conv_layers = anatomy_lib.layers_text(decoder, first_map)
  missing = [n for d in [*encoder, loc_head, scale_head, *decoder]
             for n in (d.weight, d.bias) if n and n not in arrays]
  if missing:
    raise KerasModelError(f"{label} lacks the weights {', '.join(missing)}")
  for dense, norm in layers.folds:
    notes.append(f"BatchNormalization {norm} folded into {dense} (its moving "
                 "statistics, as at inference); training continues without "
                 "it")
  anatomy = anatomy_lib.Anatomy(
      input=None, image_shape=image_shape, encoder=encoder,
      loc_head=loc_head, scale_head=scale_head, posterior_scale=scale,
      scale_floor=0.0, noise=None, loc=None, scale=None, latent=None,
      decoder=decoder, output=None, likelihood=likelihood,
      encoder_conv=classic and conv_encoder == "classic",
      decoder_conv=decoder_conv, encoder_conv_layers=encoder_conv_layers,
      decoder_conv_layers=decoder_conv_layers)
  return KerasModel(anatomy, arrays, step, files, derived, gaussian_scale,
                    notes)


def _conv_encoder(path, encoder):
  """None for an MLP encoder; "classic" for the classic Keras conv encoder
  (`nets.ConvEncoderNet`); "general" for any other chain of convolutions,
  flatten and dense layers (`nets.ConvStackEncoderNet`). Raises for others.
  """
  kinds = [d.kind for d in encoder]
  if "conv" not in kinds and "conv_transpose" not in kinds:
    return None
  convs = kinds.index("dense") if "dense" in kinds else len(kinds)
  if (convs == 0 or set(kinds[:convs]) != {"conv"}
      or set(kinds[convs:]) - {"dense"}):
    got = ", ".join(f"{d.kind} {d.units}" for d in encoder)
    raise KerasModelError(
        f"{path}: the conv encoder is {got}; native conv encoders are "
        "Conv2D layers, then flatten and any Dense layers"
        f"{_GENERATOR_ROUTE}")
  shape = tuple((d.units, d.stride) for d in encoder[:-1])
  if (shape == _CONV_ENCODER and encoder[-1].kind == "dense"
      and encoder[-1].units == _CONV_ENCODER_DENSE
      and all(d.kernel == 3 for d in encoder[:-1])
      and len({d.activation for d in encoder}) == 1):
    return "classic"
  return "general"


def _decoder_map(path, layers, decoder, image_shape):
  """The map (H, W, C) the conv decoder's dense layer is reshaped to, None
  for an MLP decoder; raises for a conv decoder with no native counterpart
  (dense, reshape, then Conv2D / Conv2DTranspose layers back to the image).
  """
  kinds = [d.kind for d in decoder]
  if kinds == ["dense"] * len(kinds):
    return None
  if kinds[0] != "dense" or "dense" in kinds[1:] or len(kinds) < 2:
    raise KerasModelError(
        f"{path}: the conv decoder is {', '.join(kinds)}; the native one is "
        "one Dense layer, a reshape, then Conv2D / Conv2DTranspose layers"
        f"{_GENERATOR_ROUTE}")
  name = decoder[1].weight.split("/kernel")[0]
  stop = decoder[0].weight.split("/kernel")[0]
  shapes = []
  while name != stop:
    feeding = layers.inbound(name)
    if not feeding:
      break
    name = feeding[0]
    if layers.layers[name]["class_name"] == "Reshape":
      shapes.append(layers.layers[name]["config"].get("target_shape", []))
  if (len(shapes) != 1 or len(shapes[0]) != 3
      or int(np.prod(shapes[0])) != decoder[0].units):
    raise KerasModelError(
        f"{path}: the conv decoder's dense layer {stop} is not reshaped once "
        f"to a map of its {decoder[0].units} units (found reshapes to "
        f"{shapes}){_GENERATOR_ROUTE}")
  first_map = tuple(int(n) for n in shapes[0])
  height, width = first_map[:2]
  for d in decoder[1:]:
    height, width = ((height * d.stride, width * d.stride)
                     if d.kind == "conv_transpose" else
                     (-(-height // d.stride), -(-width // d.stride)))
  if ((height, width) != tuple(image_shape[:2])
      or decoder[-1].units != image_shape[-1]):
    raise KerasModelError(
        f"{path}: the conv decoder ends at maps {[height, width]} of "
        f"{decoder[-1].units} channels, not the images "
        f"{list(image_shape)}{_GENERATOR_ROUTE}")
  return first_map


def _is_classic_decoder(decoder, first_map, image_shape):
  """Whether the conv decoder is the classic one (`nets.ConvDecoderNet`):
  dense to half the image, stride-2 transposed conv, stride-1 output, 3x3
  kernels, one activation."""
  kinds = [d.kind for d in decoder]
  height, width = image_shape[:2]
  return (len(kinds) == 3 and kinds[1] == "conv_transpose"
          and decoder[1].stride == 2 and decoder[2].stride == 1
          and all(d.kernel == 3 for d in decoder[1:])
          and decoder[0].activation == decoder[1].activation
          and tuple(first_map[:2]) == (-(-height // 2), -(-width // 2)))


def _containing(layers, name):
  """Names of the models whose own layers include `name`."""
  return {m for m, c in layers.models.items()
          if any((l.get("name") or l["config"]["name"]) == name
                 for l in c["layers"])}


def describe(anatomy, path):
  """Report lines for a Keras anatomy."""
  def names(dense):
    kinds = {"dense": "", "conv": "conv ", "conv_transpose": "conv^T "}
    return ", ".join(
        f"{kinds[d.kind]}{d.units}"
        f"{'/%d' % d.stride if d.stride > 1 else ''}"
        f"{' k%d' % d.kernel if d.kind != 'dense' and d.kernel != 3 else ''}"
        f" {d.activation}" for d in dense)
  return [
      f"Keras model: {path} as images {list(anatomy.image_shape)}",
      f"Encoder hidden layers: {names(anatomy.encoder)}; heads "
      f"{anatomy.loc_head.weight.split('/')[0]} (mean), "
      f"{anatomy.scale_head.weight.split('/')[0]} (scale)",
      f"Decoder layers: {names(anatomy.decoder)} -> {anatomy.likelihood}",
  ]


_NUMPY = {**reference.NUMPY_ACTIVATIONS, "linear": lambda x: x}
_NUMPY_SCALES = {"log_variance": lambda r: np.exp(0.5 * r),
                 "log_scale": np.exp,
                 "softplus": lambda r: np.logaddexp(0.0, r)}


def reference_values(anatomy, arrays, images, noise):
  """The Keras VAE in float64 numpy: [loc, scale, output mean].

  Shares no code with TensorFlow or `nets`: a native model that agrees
  with it loaded the right arrays into the right weights.
  """
  def layer(x, d, out_hw=None):
    w = np.asarray(arrays[d.weight], np.float64)
    if d.kind == "conv":
      out = _conv_same(x, w, d.stride)
    elif d.kind == "conv_transpose":
      out = _conv_transpose_same(x, w, out_hw, d.stride)
    else:
      out = x.reshape(len(x), -1) @ w
    if d.bias:
      out = out + np.asarray(arrays[d.bias], np.float64)
    return _NUMPY[d.activation](out)

  h = np.asarray(images, np.float64)
  if not (anatomy.encoder_conv or anatomy.encoder_conv_layers):
    h = h.reshape(len(images), -1)
  for d in anatomy.encoder:
    h = layer(h, d)
  loc = layer(h, anatomy.loc_head)
  scale = _NUMPY_SCALES[anatomy.posterior_scale](
      layer(h, anatomy.scale_head)) + anatomy.scale_floor
  x = loc + scale * noise
  if anatomy.decoder_conv_layers:
    # Only the first map's shape is read from the text; each layer's size
    # follows from its stride, as Keras' SAME layers compute it.
    first = anatomy.decoder_conv_layers.split(",")[0].split(":")[1]
    dense, *convs = anatomy.decoder
    x = layer(x, dense).reshape(len(x), *(int(n) for n in first.split("x")))
    for d in convs:
      x = layer(x, d, (x.shape[1] * d.stride, x.shape[2] * d.stride))
  elif anatomy.decoder_conv is None:
    for d in anatomy.decoder:
      x = layer(x, d)
  else:
    hidden, _, (height, width, _) = anatomy.decoder_conv
    dense, upsample, out = anatomy.decoder
    x = layer(x, dense).reshape(len(x), -(-height // 2), -(-width // 2),
                                hidden)
    x = layer(layer(x, upsample, (height, width)), out)
  if anatomy.likelihood in ("bernoulli", "gaussian"):
    x = _NUMPY["sigmoid"](x)
  return [loc, scale, x.reshape(len(x), -1)]


def _conv_same(x, w, stride):
  """SAME convolution with `stride`: x [B, H, W, I], w [k, k, I, O]."""
  k = w.shape[0]
  height, width = x.shape[1:3]
  out_h, out_w = -(-height // stride), -(-width // stride)
  pad_h = max((out_h - 1) * stride + k - height, 0)
  pad_w = max((out_w - 1) * stride + k - width, 0)
  padded = np.pad(x, [(0, 0), (pad_h // 2, pad_h - pad_h // 2),
                      (pad_w // 2, pad_w - pad_w // 2), (0, 0)])
  out = np.zeros((len(x), out_h, out_w, w.shape[-1]))
  for a in range(k):
    for b in range(k):
      out += padded[:, a:a + stride * out_h:stride,
                    b:b + stride * out_w:stride, :] @ w[a, b]
  return out


def _conv_transpose_same(x, w, out_hw, stride):
  """SAME transposed convolution: x [B, h, w, I], w [k, k, O, I], the
  adjoint of `_conv_same` from `out_hw` with `stride`."""
  k = w.shape[0]
  height, width = out_hw
  pad_h = max((x.shape[1] - 1) * stride + k - height, 0)
  pad_w = max((x.shape[2] - 1) * stride + k - width, 0)
  top, left = pad_h // 2, pad_w // 2
  out = np.zeros((len(x), height + k + stride * x.shape[1],
                  width + k + stride * x.shape[2], w.shape[2]))
  for a in range(k):
    for b in range(k):
      out[:, a:a + stride * x.shape[1]:stride,
          b:b + stride * x.shape[2]:stride, :] += x @ w[a, b].T
  return out[:, top:top + height, left:left + width, :]
