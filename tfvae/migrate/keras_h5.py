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
import json
import os

import h5py
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tf_keras.protobuf import saved_metadata_pb2

from tfvae import errors
from tfvae.migrate import anatomy as anatomy_lib

# Keras activation names native models have (the rest is refused).
_ACTIVATIONS = ("tanh", "relu", "elu", "softplus", "sigmoid", "linear")
_GENERATOR_ROUTE = "; it has no native tfvae counterpart"
_KERAS_METADATA = "keras_metadata.pb"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Layers a VAE's encoder and decoder path may hold besides Dense ones.
_PASSIVE = ("InputLayer", "Flatten", "Reshape")
# The classic Keras conv VAE's encoder, which `nets.ConvEncoderNet` is:
# (filters, stride) of its convolutions, then the dense layer's width.
_CONV_ENCODER = ((32, 1), (64, 2), (64, 1), (64, 1))
_CONV_ENCODER_DENSE = 32


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
    if isinstance(node, dict):  # Keras 3 style.
      args = node.get("args", [])
      return [a["config"]["keras_history"][0] for a in _flat(args)
              if isinstance(a, dict) and "config" in a]
    return [entry[0] for entry in node]

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
  if (kernel != [3, 3] or config.get("padding") != "same"
      or len(set(strides)) != 1 or config.get("dilation_rate", [1, 1])
      not in ([1, 1], (1, 1))
      or config.get("data_format", "channels_last") != "channels_last"
      or activation not in _ACTIVATIONS):
    raise KerasModelError(
        f"{layers.path}: layer {name} ({layer['class_name']}) is not a 3x3 "
        "'same' channels-last convolution with a native activation, as "
        f"native conv nets have{_GENERATOR_ROUTE}")
  kind = "conv" if layer["class_name"] == "Conv2D" else "conv_transpose"
  return anatomy_lib.Dense(
      weight=f"{name}/kernel", bias=(f"{name}/bias"
                                     if config.get("use_bias", True)
                                     else None),
      activation=activation, units=int(config["filters"]), kind=kind,
      stride=int(strides[0]))


def _dense(layers, name):
  layer = layers.layers[name]
  if layer["class_name"] in ("Conv2D", "Conv2DTranspose"):
    return _conv(layers, name)
  if layer["class_name"] != "Dense":
    raise KerasModelError(
        f"{layers.path}: layer {name} ({layer['class_name']}) is not a Dense "
        f"layer, which native MLP VAEs are built of{_GENERATOR_ROUTE}")
  config = layer["config"]
  activation = config.get("activation", "linear")
  if isinstance(activation, dict):
    activation = activation.get("config", {}).get("name", repr(activation))
  if activation not in _ACTIVATIONS:
    raise KerasModelError(
        f"{layers.path}: layer {name} has activation {activation!r}, which "
        f"native models do not have{_GENERATOR_ROUTE}")
  return anatomy_lib.Dense(
      weight=f"{name}/kernel", bias=(f"{name}/bias"
                                     if config.get("use_bias", True)
                                     else None),
      activation=activation, units=int(config["units"]))


def _chain(layers, top, stop):
  """Dense layers from a layer in `stop` (exclusive) up to `top`."""
  chain = []
  name = top
  while name not in stop:
    if layers.layers[name]["class_name"] in _PASSIVE:
      feeding = layers.inbound(name)
      if not feeding:
        raise KerasModelError(
            f"{layers.path}: layer {top} is not reached from {sorted(stop)}")
      name = feeding[0]
      continue
    chain.append(_dense(layers, name))
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


def _sampler(layers):
  """(Lambda layer name, loc layer, raw scale layer)."""
  lambdas = [n for n, l in layers.layers.items()
             if l["class_name"] == "Lambda"
             and len(layers.inbound(n)) == 2]
  unknown = sorted({l["class_name"] for l in layers.layers.values()}
                   - {"InputLayer", "Dense", "Lambda", "Functional", "Model",
                      "TFOpLambda", "SlicingOpLambda", "AddLoss", "Flatten",
                      "Reshape", "AddMetric"})
  if len(lambdas) != 1:
    raise KerasModelError(
        f"{layers.path}: expected one sampling Lambda layer taking the "
        f"posterior mean and scale, found {len(lambdas)}"
        + (f" (other layers: {', '.join(unknown)})" if unknown else "")
        + _GENERATOR_ROUTE)
  loc, raw = layers.inbound(lambdas[0])
  return lambdas[0], loc, raw


def is_keras_savedmodel(path):
  """Whether `path` is a Keras 2 SavedModel directory."""
  return os.path.isfile(os.path.join(path, _KERAS_METADATA))


def _read_savedmodel(path):
  """(config, {layer/kernel: array}, step) of a Keras SavedModel directory.

  The configuration is the root's JSON in `keras_metadata.pb` (a protocol
  buffer, data); each Dense layer's arrays are found through the
  checkpoint's object graph, from the layer's path in the metadata.
  """
  metadata = saved_metadata_pb2.SavedMetadata()
  with open(os.path.join(path, _KERAS_METADATA), "rb") as f:
    metadata.ParseFromString(f.read())
  nodes = {n.node_path: json.loads(n.metadata) for n in metadata.nodes}
  root = nodes.get("root")
  if not root or "config" not in root:
    raise KerasModelError(f"{path}/{_KERAS_METADATA} has no model "
                          "configuration")
  config = {"class_name": root["class_name"], "config": root["config"]}
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
  for node_path, meta in nodes.items():
    if meta.get("class_name") != "Dense":
      continue
    node = node_of(node_path)
    if node is None:
      continue
    for child in graph.nodes[node].children:
      if child.local_name in ("kernel", "bias"):
        attributes = graph.nodes[child.node_id].attributes
        if attributes:
          arrays[f"{meta['name']}/{child.local_name}"] = reader.get_tensor(
              attributes[0].checkpoint_key)
  step = None
  for key in ("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
              "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"):
    if reader.has_tensor(key):
      step = int(reader.get_tensor(key))
  return config, arrays, step


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
          "configuration, the JSON of model.to_json(), with --keras_config")
    arrays = {}

    def collect(name, item):
      if isinstance(item, h5py.Dataset) and name.endswith(
          ("/kernel:0", "/bias:0", "/kernel", "/bias")):
        parts = name.split("/")
        key = f"{parts[-2]}/{parts[-1].split(':')[0]}"
        arrays.setdefault(key, np.asarray(item))
    weights_group.visititems(collect)
    step = None
    if "optimizer_weights" in handle:
      for name in ("iteration:0", "iter:0"):
        if name in handle["optimizer_weights"]:
          step = int(np.asarray(handle["optimizer_weights"][name]))
  return config, arrays, step


def read_keras(path, config_path=None, posterior_scale=None):
  """Reads a Keras 2 VAE saved in HDF5 or as a Keras SavedModel.

  Args:
    path: The `.h5` of `model.save` or `model.save_weights`, or the
      directory of `model.save(path, save_format="tf")`.
    config_path: `model.to_json()` output, needed for a weights-only file.
    posterior_scale: "log_variance", "log_scale" or "softplus" for the
      sampling Lambda; None: from the raw scale layer's name.

  Returns:
    (anatomy.Anatomy, {weight name: array}, step or None).

  Raises:
    KerasModelError: Naming the file and the layer at fault.
  """
  if is_keras_savedmodel(path):
    config, arrays, step = _read_savedmodel(path)
  else:
    config, arrays, step = _read_h5(path, config_path)
  layers = _Layers(config, path)
  lam, loc_name, raw_name = _sampler(layers)
  scale = posterior_scale or _scale_from_name(raw_name)
  if scale is None:
    raise KerasModelError(
        f"{path}: the sampling layer {lam} takes {loc_name} and {raw_name}; "
        "its function is code and is not read, and the name "
        f"{raw_name} does not tell the parametrisation; pass "
        "--posterior_scale=log_variance (z = mean + exp(r / 2) * eps), "
        "log_scale (exp(r)) or softplus")
  inputs = _input_layers(layers)
  loc_head = _dense(layers, loc_name)
  scale_head = _dense(layers, raw_name)
  trunk_top = layers.inbound(loc_name)[0]
  if layers.inbound(raw_name)[0] != trunk_top:
    raise KerasModelError(f"{path}: {loc_name} and {raw_name} do not share "
                          "their input layer")
  encoder = _chain(layers, trunk_top, inputs)
  start = trunk_top
  while layers.layers[start]["class_name"] != "InputLayer":
    start = layers.inbound(start)[0]
  batch_shape = layers.layers[start]["config"].get("batch_input_shape") or (
      layers.layers[start]["config"].get("batch_shape"))
  decoder_models = [m for m in layers.models
                    if any(layers.layers[o]["class_name"] in ("Dense",
                                                              "Conv2D")
                           and layers.layers[o]["config"].get("activation")
                           in ("sigmoid", "linear")
                           for o in layers.outputs(m))
                    and m not in _containing(layers, lam)]
  if len(decoder_models) != 1:
    raise KerasModelError(
        f"{path}: found {len(decoder_models)} decoder models (a functional "
        "model outputting a sigmoid or linear Dense layer, apart from the "
        "encoder); expected one")
  decoder_model = decoder_models[0]
  top = layers.outputs(decoder_model)[0]
  decoder = _chain(layers, top, inputs)
  last = decoder[-1]
  likelihood = ("bernoulli" if last.activation == "sigmoid"
                else "gaussian_identity")
  decoder[-1] = anatomy_lib.Dense(last.weight, last.bias, "linear",
                                  last.units, last.kind, last.stride)
  if not encoder:
    raise KerasModelError(f"{path}: the encoder has no hidden Dense layer")
  encoder_conv = _check_conv_encoder(path, encoder)
  decoder_conv = _check_conv_decoder(path, layers, decoder)
  if any(d.activation == "linear" for d in encoder + decoder[:-1]):
    raise KerasModelError(f"{path}: a hidden Dense layer has no activation; "
                          "native MLPs activate every hidden layer")
  if isinstance(batch_shape, dict):  # A SavedModel's tuple: {"items": ...}.
    batch_shape = batch_shape.get("items", [])
  pixels = int(np.prod([d for d in batch_shape[1:]]))
  side = int(round(pixels ** 0.5))
  if len(batch_shape) == 4:
    image_shape = tuple(int(d) for d in batch_shape[1:])
  elif side * side == pixels:
    image_shape = (side, side, 1)
  else:
    raise KerasModelError(f"{path}: input of {pixels} values is not a "
                          "square image")
  missing = [n for d in [*encoder, loc_head, scale_head, *decoder]
             for n in (d.weight, d.bias) if n and n not in arrays]
  if missing:
    raise KerasModelError(f"{path} lacks the weights {', '.join(missing)}")
  anatomy = anatomy_lib.Anatomy(
      input=None, image_shape=image_shape, encoder=encoder,
      loc_head=loc_head, scale_head=scale_head, posterior_scale=scale,
      scale_floor=0.0, noise=None, loc=None, scale=None, latent=None,
      decoder=decoder, output=None, likelihood=likelihood,
      encoder_conv=encoder_conv)
  if decoder_conv is not None:
    anatomy.decoder_conv = (*decoder_conv, image_shape)
  return anatomy, arrays, step


def _check_conv_encoder(path, encoder):
  """Whether `encoder` is the classic conv encoder; raises if it is
  another conv net."""
  kinds = [d.kind for d in encoder]
  if "conv" not in kinds and "conv_transpose" not in kinds:
    return False
  shape = tuple((d.units, d.stride) for d in encoder[:-1])
  if (shape != _CONV_ENCODER or encoder[-1].kind != "dense"
      or encoder[-1].units != _CONV_ENCODER_DENSE
      or len({d.activation for d in encoder}) != 1):
    raise KerasModelError(
        f"{path}: the conv encoder is {[d.kind for d in encoder]} with "
        f"(filters, stride) {list(shape)}; the native conv encoder is the "
        f"classic one, {list(_CONV_ENCODER)} then dense "
        f"{_CONV_ENCODER_DENSE}, one activation{_GENERATOR_ROUTE}")
  return True


def _check_conv_decoder(path, layers, decoder):
  """(channels after the dense layer, after the transposed convolution) of
  a conv decoder, None for an MLP; raises for another conv net."""
  kinds = [d.kind for d in decoder]
  if kinds == ["dense"] * len(kinds):
    return None
  if (kinds != ["dense", "conv_transpose", "conv"]
      or decoder[1].stride != 2 or decoder[2].stride != 1
      or decoder[0].activation != decoder[1].activation):
    raise KerasModelError(
        f"{path}: the conv decoder is {kinds}; the native one is dense, "
        "reshape, stride-2 transposed conv, conv (one activation)"
        f"{_GENERATOR_ROUTE}")
  reshapes = [l for l in layers.layers.values()
              if l["class_name"] == "Reshape"]
  channels = reshapes[0]["config"]["target_shape"][-1] if reshapes else None
  if channels is None or decoder[0].units % channels:
    raise KerasModelError(f"{path}: the conv decoder's reshape is not read")
  return (int(channels), decoder[1].units)


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
        f"{kinds[d.kind]}{d.units}{'/%d' % d.stride if d.stride > 1 else ''}"
        f" {d.activation}" for d in dense)
  return [
      f"Keras model: {path} as images {list(anatomy.image_shape)}",
      f"Encoder hidden layers: {names(anatomy.encoder)}; heads "
      f"{anatomy.loc_head.weight.split('/')[0]} (mean), "
      f"{anatomy.scale_head.weight.split('/')[0]} (scale)",
      f"Posterior scale: {anatomy.posterior_scale} (sampling Lambda not "
      "read: it is code)",
      f"Decoder layers: {names(anatomy.decoder)} -> {anatomy.likelihood}",
  ]


_NUMPY = {
    "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
    "linear": lambda x: x,
}
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
  if not anatomy.encoder_conv:
    h = h.reshape(len(images), -1)
  for d in anatomy.encoder:
    h = layer(h, d)
  loc = layer(h, anatomy.loc_head)
  scale = _NUMPY_SCALES[anatomy.posterior_scale](
      layer(h, anatomy.scale_head)) + anatomy.scale_floor
  x = loc + scale * noise
  if anatomy.decoder_conv is None:
    for d in anatomy.decoder:
      x = layer(x, d)
  else:
    hidden, _, (height, width, _) = anatomy.decoder_conv
    dense, upsample, out = anatomy.decoder
    x = layer(x, dense).reshape(len(x), -(-height // 2), -(-width // 2),
                                hidden)
    x = layer(layer(x, upsample, (height, width)), out)
  if anatomy.likelihood == "bernoulli":
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
