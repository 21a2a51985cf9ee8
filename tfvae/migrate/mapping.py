"""Mapping the variables of a TF1 checkpoint into a native tfvae decoder.

A TF1 checkpoint without its graph is a bag of unnamed arrays (`Variable`,
`Variable_1`, ...). Given the decoder's architecture (`DecoderSpec`), a native
`models.Decoder` has known weight names and shapes
(`decoder/mlp/linear_0/w` [latent_size, hidden], ...); each of them is
filled from one checkpoint variable, named explicitly (`--map
decoder/mlp/linear_0/w=Variable_3`) or found by its shape when the shape
identifies it uniquely. Creation order is never used to guess: seed 003's
encoder and decoder hidden biases are both [512], and only the user knows
which is which.

`reference.decode` recomputes the decoder in numpy from the same arrays, to
check the native decoder that they were loaded into.
"""
import dataclasses
import json

import tensorflow as tf

from tfvae import errors
from tfvae import likelihoods
from tfvae import models
from tfvae import nets

NETWORKS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
  """The architecture of the decoder a TF1 checkpoint is mapped into.

  Attributes:
    network: "mlp" or "conv".
    latent_size: Width of z.
    image_shape: (H, W, C) of the images.
    hidden_sizes: MLP hidden widths from z upwards.
    activation: Hidden activation name (see `nets.ACTIVATIONS`).
    likelihood: "bernoulli" (the TF1 output is sigmoid(logits), the pixel
      probabilities) or "gaussian" (the TF1 output is the pixel mean itself).
    gaussian_scale: The pixel standard deviation that a Gaussian decoder's
      `scale` output reports (a TF1 squared-error loss does not record one).
    conv_channels: (dense, upsample) channels of the conv decoder: the dense
      layer's output is reshaped to [H/2, W/2, dense], then upsampled by a
      stride-2 transposed convolution to `upsample` channels.
  """
  network: str = "mlp"
  latent_size: int = 2
  image_shape: tuple = (28, 28, 1)
  hidden_sizes: tuple = (512,)
  activation: str = "tanh"
  likelihood: str = "bernoulli"
  gaussian_scale: float = 0.1
  conv_channels: tuple = (64, 32)

  def __post_init__(self):
    if self.network not in NETWORKS:
      raise errors.TfvaeError(
          f"--network must be one of {', '.join(NETWORKS)}, not "
          f"{self.network!r}")
    if self.likelihood not in LIKELIHOODS:
      raise errors.TfvaeError(
          f"--likelihood must be one of {', '.join(LIKELIHOODS)} for a "
          f"mapped TF1 checkpoint, not {self.likelihood!r}")
    if self.activation not in nets.ACTIVATIONS:
      raise errors.TfvaeError(
          f"--activation must be one of {', '.join(sorted(nets.ACTIVATIONS))}"
          f", not {self.activation!r}")
    for flag, values, count in (("--image_shape", self.image_shape, 3),
                                ("--conv_channels", self.conv_channels, 2)):
      if len(values) != count or min(values) <= 0:
        raise errors.TfvaeError(
            f"{flag} needs {count} positive integers, not {list(values)}")
    if self.latent_size <= 0 or any(h <= 0 for h in self.hidden_sizes):
      raise errors.TfvaeError(
          "--latent_dim and --hidden_sizes must be positive integers")

  def to_dict(self):
    """The spec as a JSON-friendly dict (tuples become lists)."""
    d = dataclasses.asdict(self)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def build_decoder(spec):
  """Builds the native decoder `spec` describes (fresh weights).

  Args:
    spec: A `DecoderSpec`.

  Returns:
    A `models.Decoder` named "decoder" whose `outputs(z)["mean"]` is what the
    TF1 graph's output would be.
  """
  if spec.likelihood == "bernoulli":
    likelihood = likelihoods.Bernoulli()
  else:
    likelihood = likelihoods.Gaussian(spec.gaussian_scale,
                                      mean_activation="identity")
  net = None
  if spec.network == "conv" and tuple(spec.conv_channels) != (64, 32):
    # A TF1 conv decoder may have other channels than the native default; its
    # net is built under the decoder's scope so that the variable names are
    # the ones the native decoder would give it.
    with tf.name_scope("decoder"):
      net = nets.ConvDecoderNet(
          spec.latent_size, spec.image_shape, spec.image_shape[-1],
          spec.activation, hidden_channels=spec.conv_channels[0],
          upsample_channels=spec.conv_channels[1], name="conv")
  return models.Decoder(
      spec.latent_size, spec.image_shape, likelihood, spec.network,
      tuple(spec.hidden_sizes), spec.activation, name="decoder", net=net)


def variable_key(variable):
  """The name a mapping uses for a tf.Variable: its name without ":0"."""
  name = variable.name
  return name[:-2] if name.endswith(":0") else name


def weight_names(spec):
  """Names of the decoder's weights in layer order, z upwards (w before b)."""
  if spec.network == "mlp":
    layers = [f"mlp/linear_{i}" for i in range(len(spec.hidden_sizes) + 1)]
  else:
    layers = ["conv/dense", "conv/upsample", "conv/out"]
  return [f"decoder/{layer}/{part}" for layer in layers for part in "wb"]


def decoder_weights(decoder, spec):
  """Lists (name, shape) of the decoder's weights, in layer order.

  Args:
    decoder: The decoder `build_decoder(spec)` made.
    spec: Its `DecoderSpec`.
  """
  shapes = {variable_key(v): tuple(v.shape.as_list())
            for v in decoder.trainable_variables}
  names = weight_names(spec)
  if sorted(names) != sorted(shapes):
    raise AssertionError(f"decoder weights {sorted(shapes)} are not {names}")
  return [(name, shapes[name]) for name in names]


def parse_mapping(entries):
  """Parses --map entries ("slot=variable", comma lists allowed).

  Args:
    entries: Iterable of strings such as
      "decoder/mlp/linear_0/w=Variable_3,decoder/mlp/linear_0/b=Variable_8".

  Returns:
    Dict slot -> checkpoint variable name.

  Raises:
    errors.TfvaeError: For an entry without "=" or a slot mapped twice.
  """
  mapping = {}
  for entry in entries or ():
    for item in str(entry).split(","):
      item = item.strip()
      if not item:
        continue
      slot, sep, variable = item.partition("=")
      slot, variable = slot.strip(), variable.strip()
      if not sep or not slot or not variable:
        raise errors.TfvaeError(
            f"--map entry {item!r} is not DECODER_WEIGHT=CHECKPOINT_VARIABLE")
      _add(mapping, slot, variable, "--map")
  return mapping


def read_mapping_file(path):
  """Reads a JSON object {decoder weight: checkpoint variable} from `path`."""
  try:
    with open(path) as f:
      content = json.load(f)
  except FileNotFoundError:
    raise errors.TfvaeError(f"mapping file {path} does not exist") from None
  except (OSError, ValueError) as e:
    raise errors.TfvaeError(
        f"mapping file {path} is not valid JSON ({e})") from None
  if not isinstance(content, dict) or not all(
      isinstance(k, str) and isinstance(v, str) for k, v in content.items()):
    raise errors.TfvaeError(
        f"mapping file {path} must hold a JSON object of strings "
        '{"decoder/mlp/linear_0/w": "Variable_3", ...}')
  mapping = {}
  for slot, variable in content.items():
    _add(mapping, slot, variable, f"mapping file {path}")
  return mapping


def _add(mapping, slot, variable, where):
  slot = slot[:-2] if slot.endswith(":0") else slot
  variable = variable[:-2] if variable.endswith(":0") else variable
  if slot in mapping and mapping[slot] != variable:
    raise errors.TfvaeError(
        f"{where} maps {slot} twice ({mapping[slot]} and {variable})")
  mapping[slot] = variable


def _shape(shape):
  return tuple(int(d) for d in shape)


def match_by_shape(required, available):
  """Assigns checkpoint variables to named slots by their shapes.

  Shapes must identify variables uniquely: creation order is never used to
  break ties. Every problem is reported at once, in one line.

  Args:
    required: Ordered list of (slot_name, shape).
    available: Dict or list of (variable_name, shape) from the checkpoint.

  Returns:
    (assignment, used, unused): dict slot_name -> variable_name, and the
    sorted lists of used and unused variable names.

  Raises:
    errors.TfvaeError: If a slot has no variable of its shape, or several
      slots or variables share a shape; the message lists the candidates and
      the slots that did match.
  """
  available = {name: _shape(shape) for name, shape in dict(available).items()}
  by_shape = {}
  for name, shape in available.items():
    by_shape.setdefault(shape, []).append(name)
  slots_by_shape = {}
  for slot, shape in required:
    slots_by_shape.setdefault(_shape(shape), []).append(slot)
  assignment, problems = {}, []
  for slot, shape in required:
    shape = _shape(shape)
    names = sorted(by_shape.get(shape, []))
    if not names:
      problems.append(
          f"no checkpoint variable has the shape {list(shape)} of {slot}")
    elif len(slots_by_shape[shape]) > 1:
      if slot == slots_by_shape[shape][0]:
        problems.append(
            f"{', '.join(slots_by_shape[shape])} share the shape "
            f"{list(shape)} (candidates: {', '.join(names)})")
    elif len(names) > 1:
      problems.append(f"{slot} {list(shape)} could be any of "
                      f"{', '.join(names)}")
    else:
      assignment[slot] = names[0]
  if problems:
    matched = ", ".join(f"{s}={v}" for s, v in assignment.items()) or "none"
    raise errors.TfvaeError(
        f"cannot match checkpoint variables to decoder weights by shape: "
        f"{'; '.join(problems)}; map them by name (--map or --map_file; "
        f"matched by shape: {matched})")
  used = sorted(set(assignment.values()))
  unused = sorted(set(available) - set(used))
  return assignment, used, unused


def check_mapping(required, mapping, checkpoint_shapes, checkpoint):
  """Checks an explicit mapping against the decoder and the checkpoint.

  Args:
    required: Ordered list of (slot_name, shape) of the decoder.
    mapping: Dict slot_name -> checkpoint variable name.
    checkpoint_shapes: Dict of every checkpoint variable's shape.
    checkpoint: The checkpoint prefix, for messages.

  Returns:
    The mapping, in the decoder's weight order.

  Raises:
    errors.TfvaeError: Naming the slot or variable at fault when a slot is
      unknown or unassigned, a variable is missing or used twice, or shapes
      disagree.
  """
  slots = dict(required)
  for slot in mapping:
    if slot not in slots:
      raise errors.TfvaeError(
          f"the mapping names {slot}, which is not a weight of the decoder "
          f"(its weights: {', '.join(slots)})")
  users = {}
  for slot, shape in required:
    if slot not in mapping:
      raise errors.TfvaeError(
          f"decoder weight {slot} {list(shape)} is not mapped to a checkpoint "
          "variable; add it to --map or --map_file")
    variable = mapping[slot]
    if variable not in checkpoint_shapes:
      raise errors.TfvaeError(
          f"variable {variable} (mapped to {slot}) is not in checkpoint "
          f"{checkpoint}")
    if variable in users:
      raise errors.TfvaeError(
          f"variable {variable} is mapped to both {users[variable]} and "
          f"{slot}")
    users[variable] = slot
    have = _shape(checkpoint_shapes[variable])
    if have != _shape(shape):
      raise errors.TfvaeError(
          f"variable {variable} has shape {list(have)} but decoder weight "
          f"{slot} needs {list(shape)} (check the mapping and --network, "
          "--latent_dim, --hidden_sizes, --image_shape)")
  return {slot: mapping[slot] for slot, _ in required}
