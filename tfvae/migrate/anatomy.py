"""A whole TF1 VAE read from its graph: encoder, sampler, decoder, loss.

`candidates.find_ends` finds the decoder (z to output). A full migration also
needs the encoder, from the input placeholder through the hidden layers to
the posterior's parameters, and how the sampler turns them into z:

  z = loc + scale * eps,  scale = exp(r / 2)         (log-variance)
                                = sqrt(exp(r))       (log sigma^2)
                                = exp(r)             (log sigma)
                                = softplus(r) + c    (a softplus std)

written by hand or by `tf.distributions.Normal(loc, scale).sample()`, with loc
and r from two dense layers or one split in two. `read_anatomy` walks the
graph back from the sampler's random op and from the decoder output, layer by
layer (MatMul, bias add, activation), and returns the checkpoint variables
and activations of every layer; what it cannot map onto a native tfvae VAE it
names in one line (the op and why) and points to `tfvae-build-generator`.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import nets
from tfvae.migrate import candidates
from tfvae.migrate import ops

# TF op type -> the `nets.ACTIVATIONS` name that computes the same.
ACTIVATION_OPS = {
    "Tanh": "tanh", "Relu": "relu", "Elu": "elu", "Selu": "selu",
    "Softplus": "softplus",
    "Sigmoid": "sigmoid", "LeakyRelu": "leaky_relu",
}
# tf.nn.leaky_relu's slope, the one native "leaky_relu" uses.
_LEAKY_SLOPE = 0.2
_PASS_THROUGH = ("Identity", "Snapshot", "StopGradient")
_ADD_OPS = ("Add", "AddV2", "BiasAdd")
_GENERATOR_ROUTE = ("; only the decoder can be migrated, as a generator: "
                    "tfvae-build-generator --checkpoint=... --export_dir=...")


class UnsupportedGraphError(errors.TfvaeError):
  """A part of the TF1 graph has no native tfvae counterpart."""


@dataclasses.dataclass(frozen=True)
class Dense:
  """One dense layer of the graph: y = act(x W + b).

  Attributes:
    weight: Checkpoint name of W [in, out].
    bias: Checkpoint name of b [out], or None (no bias: zeros).
    activation: A `nets.ACTIVATIONS` name, or "linear".
    units: out (channels, for a convolution).
    kind: "dense", "conv" or "conv_transpose".
    stride: A convolution's stride.
    kernel: A convolution's kernel side.
    padding: A convolution's padding, "SAME" or "VALID".
  """
  weight: str
  bias: str
  activation: str
  units: int
  kind: str = "dense"
  stride: int = 1
  kernel: int = 3
  padding: str = "SAME"


@dataclasses.dataclass
class Anatomy:
  """What a TF1 VAE graph computes, in native terms.

  Attributes:
    input: The image placeholder, [B, pixels] or [B, H, W, C].
    image_shape: (H, W, C).
    encoder: Hidden `Dense` layers from the input up.
    loc_head: The `Dense` giving the posterior mean, or (with `split`) the
      one giving mean and raw scale side by side.
    scale_head: The `Dense` giving the raw scale r, or None when split.
    posterior_scale: A `models.POSTERIOR_SCALES` name.
    scale_floor: The constant added to the scale.
    noise: eps, the sampler's random draw (fed in verification).
    loc: The posterior mean tensor.
    scale: The posterior scale tensor.
    latent: z, the decoder's input.
    decoder: `Dense` layers from z up, the last one the output layer.
    output: The decoder output tensor (pixel means).
    likelihood: "bernoulli" (sigmoid output) or "gaussian_identity" (no
      squashing: a Gaussian mean; its scale is read from the loss), or for
      a decoder with a second, log-variance head on the output layer's
      input "gaussian_log_variance" (sigmoid mean) or
      "gaussian_log_variance_identity" (unsquashed mean).
    loss: The graph's training loss (a scalar) or None.
    per_example_loss: The [B] tensor the loss averages, or None.
    loss_sign: -1 when the loss is -mean(per_example_loss) (a per-example
      ELBO), else 1.
    targets: Other image placeholders the loss reads (a denoising graph's
      clean images), fed the input's images.
    encoder_conv_layers: For a chain of convolutions under the heads (then
      `encoder` holds them), its `nets.parse_conv_layers` text; else None.
    decoder_conv_layers: The same for a conv decoder other than the classic
      one of `decoder_conv` (`decoder`: dense, then the convolutions).
    feeds: {placeholder: value} for inference (dropout off, switches False).
    decoder_conv: For a conv decoder (dense, reshape, stride-2 transposed
      convolution, convolution; `decoder` then holds these three layers,
      their `units` the channels), (channels after the dense layer, after
      the transposed convolution, image (H, W, C)); None for an MLP.
    log_variance_head: For a two-head Gaussian decoder, the `Dense` giving
      the per-pixel log-variance v (beside `decoder[-1]`, the mean head);
      else None.
    log_variance: Its output tensor v [B, pixels], or None.
    output_logits: Whether `output` is a Bernoulli's logits, the sigmoid
      left to the loss (`tf.nn.sigmoid_cross_entropy_with_logits`), not
      the pixel means.
  """
  input: tf.Tensor
  image_shape: tuple
  encoder: list
  loc_head: Dense
  scale_head: Dense
  posterior_scale: str
  scale_floor: float
  noise: tf.Tensor
  loc: tf.Tensor
  scale: tf.Tensor
  latent: tf.Tensor
  decoder: list
  output: tf.Tensor
  likelihood: str
  loss: tf.Tensor = None
  per_example_loss: tf.Tensor = None
  feeds: dict = dataclasses.field(default_factory=dict)
  decoder_conv: tuple = None
  loss_sign: float = 1.0
  targets: tuple = ()
  encoder_conv_layers: str = None
  decoder_conv_layers: str = None
  encoder_conv: bool = False
  log_variance_head: Dense = None
  log_variance: tf.Tensor = None
  output_logits: bool = False

  @property
  def latent_size(self):
    return self.loc_head.units // (1 if self.scale_head else 2)

  def variables(self):
    """Checkpoint names of every weight the native model takes."""
    layers = [*self.encoder, self.loc_head, *self.decoder]
    if self.scale_head:
      layers.append(self.scale_head)
    if self.log_variance_head:
      layers.append(self.log_variance_head)
    return sorted({n for d in layers for n in (d.weight, d.bias) if n})

  def _conv_text(self):
    hidden, up, image = self.decoder_conv
    height, width = -(-image[0] // 2), -(-image[1] // 2)
    return (f"conv: dense to {height}x{width}x{hidden} "
            f"{self.decoder[0].activation}, transposed conv {up} stride 2 "
            f"{self.decoder[1].activation}, conv {self.decoder[2].units}")

  def fetches(self):
    """Tensors verification reads from the TF1 session."""
    found = [self.loc, self.scale, self.output]
    if self.log_variance is not None:
      found.append(self.log_variance)
    if self.per_example_loss is not None:
      found.append(self.per_example_loss)
    elif self.loss is not None:
      found.append(self.loss)
    return found

  def describe(self):
    """One line per part, for the log."""
    def layers(dense):
      return ", ".join(f"{d.units} {d.activation}" for d in dense) or "none"
    heads = (f"{self.loc_head.weight} split in mean and scale"
             if self.scale_head is None else
             f"{self.loc_head.weight} (mean), {self.scale_head.weight} "
             "(scale)")
    return [
        f"Input: {self.input.name} {candidates.shape_text(self.input.shape)} "
        f"as images {list(self.image_shape)}",
        f"Encoder hidden layers: "
        f"{self.encoder_conv_layers or layers(self.encoder)}; heads {heads}",
        f"Posterior scale: {self.posterior_scale} + {self.scale_floor:g} "
        f"({self.scale.name}); noise {self.noise.name}; z {self.latent.name}",
        ("Decoder layers: " + (self.decoder_conv_layers
                               or (layers(self.decoder)
                                   if not self.decoder_conv
                                   else self._conv_text()))
         + f" -> {self.likelihood} ({self.output.name}"
         + (" logits; the sigmoid in the loss" if self.output_logits
            else "")
         + (f", log-variance {self.log_variance.name}"
            if self.log_variance is not None else "") + ")"),
        "Loss: " + (f"{'-' if self.loss_sign < 0 else ''}"
                    f"{self.per_example_loss.name} per example"
                    if self.per_example_loss is not None else
                    (self.loss.name if self.loss is not None else "none")),
    ]


def _strip(tensor):
  """`tensor` before identities and dropout (inert at inference, where
  `MetaGraph.inference_feeds` keep every unit)."""
  while True:
    if tensor.op.type in _PASS_THROUGH:
      tensor = tensor.op.inputs[0]
    elif ops.is_dropout(tensor.op):
      tensor = _dropout_input(tensor)
    else:
      return tensor


def _dropout_input(tensor):
  """The tensor a dropout block (`dropout/...` ops) takes its values from."""
  parts = tensor.op.name.split("/")
  depth = max(i for i, p in enumerate(parts[:-1]) if p.startswith("dropout"))
  scope = "/".join(parts[:depth + 1]) + "/"
  seen, todo, found = set(), [tensor.op], []
  while todo:
    op = todo.pop()
    if op in seen:
      continue
    seen.add(op)
    for t in op.inputs:
      if t.op.name.startswith(scope):
        todo.append(t.op)
      elif (t.dtype.is_floating and t.shape.rank is not None
            and t.shape.rank >= 2
            and t.op.type not in ("Const", "Placeholder",
                                  "PlaceholderWithDefault")
            and all(t is not f for f in found)):
        found.append(t)
  if len(found) != 1:
    raise _unsupported(tensor, "is a dropout whose input cannot be told")
  return found[0]


def variable_name(tensor):
  """The variable `tensor` reads (through identities), or None."""
  op = _strip(tensor).op
  if op.type == "ReadVariableOp":
    op = _strip(op.inputs[0]).op
  if op.type in ops.VARIABLE_OP_TYPES:
    return op.name
  return None


def _constant(tensor):
  """The value of a constant tensor (through identities), or None."""
  op = _strip(tensor).op
  if op.type != "Const":
    return None
  return tf.make_ndarray(op.get_attr("value"))


def _unsupported(tensor, why):
  return UnsupportedGraphError(
      f"{tensor.name} ({tensor.op.type}) {why}{_GENERATOR_ROUTE}")


def dense_back(tensor):
  """Reads the dense layer that computes `tensor`.

  Args:
    tensor: The layer's output, after its activation (if any).

  Returns:
    (`Dense`, the layer's input tensor).

  Raises:
    UnsupportedGraphError: Naming the op, if `tensor` is not
      act(x W + b) with a variable W (and b).
  """
  tensor = _strip(tensor)
  activation = "linear"
  if tensor.op.type in ACTIVATION_OPS:
    activation = ACTIVATION_OPS[tensor.op.type]
    if tensor.op.type == "LeakyRelu":
      alpha = tensor.op.get_attr("alpha")
      if abs(alpha - _LEAKY_SLOPE) > 1e-7:
        raise _unsupported(tensor, f"has slope {alpha:g}; native leaky_relu "
                           f"has {_LEAKY_SLOPE}")
    tensor = _strip(tensor.op.inputs[0])
  if "batch_norm" in tensor.op.name or "batchnorm" in tensor.op.name:
    raise _unsupported(tensor, "is batch normalization, which native tfvae "
                       "models do not have")
  bias = None
  if tensor.op.type in _ADD_OPS:
    left, right = tensor.op.inputs[0], tensor.op.inputs[1]
    if variable_name(right) is not None:
      bias, tensor = variable_name(right), _strip(left)
    elif variable_name(left) is not None:
      bias, tensor = variable_name(left), _strip(right)
    else:
      raise _unsupported(tensor, "adds no bias variable to a weight op, "
                         "where a dense layer was expected")
  if tensor.op.type != "MatMul":
    raise _unsupported(tensor, "is not a dense layer (MatMul, bias add, "
                       "activation), which native tfvae models are built of")
  matmul = tensor.op
  if matmul.get_attr("transpose_a") or matmul.get_attr("transpose_b"):
    raise _unsupported(tensor, "multiplies by a transposed matrix")
  weight = variable_name(matmul.inputs[1])
  if weight is None:
    raise _unsupported(tensor, "multiplies by a tensor that is not a "
                       "variable")
  units = matmul.inputs[1].shape[-1]
  return Dense(weight, bias, activation, int(units)), matmul.inputs[0]


def _is_input(tensor):
  return tensor.op.type == "Placeholder"


def _to_input(tensor):
  """Follows reshapes back to a placeholder; returns it or None."""
  tensor = _strip(tensor)
  while tensor.op.type in ("Reshape", "Cast"):
    tensor = _strip(tensor.op.inputs[0])
  return tensor if _is_input(tensor) else None


_CONV_OPS = {"Conv2D": "conv", "Conv2DBackpropInput": "conv_transpose"}


def _activation_back(tensor):
  """(activation name, the tensor before it) of an activated `tensor`."""
  tensor = _strip(tensor)
  if tensor.op.type not in ACTIVATION_OPS:
    return "linear", tensor
  if tensor.op.type == "LeakyRelu":
    alpha = tensor.op.get_attr("alpha")
    if abs(alpha - _LEAKY_SLOPE) > 1e-7:
      raise _unsupported(tensor, f"has slope {alpha:g}; native leaky_relu "
                         f"has {_LEAKY_SLOPE}")
  return ACTIVATION_OPS[tensor.op.type], _strip(tensor.op.inputs[0])


def conv_back(tensor):
  """Reads act(conv(x, W) + b), a convolution or transposed convolution.

  Returns:
    (`Dense` of kind "conv" or "conv_transpose", x), or None when
    `tensor` is not computed by a convolution.

  Raises:
    UnsupportedGraphError: For a convolution native nets do not have
      (explicit padding, NCHW, dilation, unequal strides or kernel sides).
  """
  activation, inner = _activation_back(tensor)
  bias = None
  if inner.op.type in _ADD_OPS:
    left, right = inner.op.inputs[0], inner.op.inputs[1]
    if variable_name(right) is not None:
      bias, inner = variable_name(right), _strip(left)
    elif variable_name(left) is not None:
      bias, inner = variable_name(left), _strip(right)
  conv = inner.op
  if conv.type not in _CONV_OPS:
    return None
  kind = _CONV_OPS[conv.type]
  weight = variable_name(conv.inputs[1])
  shape = conv.inputs[1].shape.as_list()
  strides = list(conv.get_attr("strides"))
  dilations = list(conv.get_attr("dilations"))
  if weight is None:
    raise _unsupported(inner, "convolves with a filter that is not a "
                       "variable")
  if conv.get_attr("data_format") != b"NHWC":
    raise _unsupported(inner, "is an NCHW convolution; native nets are NHWC")
  padding = conv.get_attr("padding").decode()
  if padding not in ("SAME", "VALID"):
    raise _unsupported(inner, f"has {padding} padding; native conv nets pad "
                       "SAME or VALID")
  if (strides[0] != 1 or strides[3] != 1 or strides[1] != strides[2]
      or dilations != [1, 1, 1, 1] or shape[0] != shape[1]):
    raise _unsupported(inner, f"has strides {strides}, dilations "
                       f"{dilations}, kernel {shape[:2]}; native conv nets "
                       "take square kernels and equal strides")
  units = shape[3] if kind == "conv" else shape[2]
  data = conv.inputs[0] if kind == "conv" else conv.inputs[2]
  return Dense(weight, bias, activation, int(units), kind=kind,
               stride=int(strides[1]), kernel=int(shape[0]),
               padding=padding), data


def layers_text(layers, first_map=None):
  """The `nets.parse_conv_layers` text of conv `Dense`s (after a dense
  layer to the map `first_map` (H, W, C) when given)."""
  items = []
  if first_map is not None:
    items.append(f"dense:{'x'.join(str(n) for n in first_map)}:"
                 f"{layers[0].activation}")
    layers = layers[1:]
  items += [f"dense:{d.units}:{d.activation}" if d.kind == "dense" else
            f"{d.kind}:{d.units}:{d.kernel}:{d.stride}:{d.activation}"
            + (":valid" if d.padding == "VALID" else "")
            for d in layers]
  return ",".join(items)


def _conv_trunk(tensor):
  """Convolutions from the input up to the flattened map `tensor`:
  (input, [conv Dense]) or None when `tensor` is no flattened map."""
  flat = _strip(tensor)
  if flat.op.type != "Reshape" or _strip(flat.op.inputs[0]).shape.rank != 4:
    return None
  tensor = flat.op.inputs[0]
  layers = []
  while _to_input(tensor) is None:
    found = conv_back(tensor)
    if found is None:
      raise _unsupported(_strip(tensor), "is not a convolution, where the "
                         "encoder's chain of convolutions was expected")
    layers.append(found[0])
    tensor = found[1]
  if not layers:
    return None
  return _to_input(tensor), layers[::-1]


def _trunk(tensor):
  """Hidden layers from the input up to `tensor`: (input, [Dense], conv
  text or None)."""
  layers = []
  while _to_input(tensor) is None:
    convs = _conv_trunk(tensor)
    if convs is not None:
      # Dense hidden layers on the flattened map of a conv encoder.
      convs[1].extend(layers[::-1])
      return convs[0], convs[1], layers_text(convs[1])
    dense, tensor = dense_back(tensor)
    if dense.activation == "linear":
      raise _unsupported(tensor, "feeds a hidden layer without an "
                         "activation; native MLPs activate every hidden "
                         "layer")
    layers.append(dense)
  return _to_input(tensor), layers[::-1], None


def _sliced_halves(loc, raw):
  """The tensor p when loc = p[:, :n] and raw = p[:, n:] (p [B, 2n]), else
  None."""
  if not (loc.op.type == raw.op.type == "StridedSlice"
          and loc.op.inputs[0] is raw.op.inputs[0]):
    return None
  value = loc.op.inputs[0]
  width = value.shape.as_list()[-1] if value.shape.rank == 2 else None
  starts = []
  for tensor in (loc, raw):
    op = tensor.op
    begin, strides = _constant(op.inputs[1]), _constant(op.inputs[3])
    masks = [op.get_attr(k) for k in ("ellipsis_mask", "new_axis_mask",
                                      "shrink_axis_mask")]
    if (begin is None or strides is None or np.size(begin) != 2
        or np.any(strides != 1) or any(masks) or width is None
        or tensor.shape.as_list()[-1] != width // 2):
      raise _unsupported(tensor, "slices the posterior's parameters in a way "
                         "native models do not (they take [:, :n] as the "
                         "mean and [:, n:] as the scale)")
    starts.append(0 if op.get_attr("begin_mask") & 2 else int(begin[1]))
  if starts != [0, width // 2] or width % 2:
    raise _unsupported(raw, "slices the posterior's parameters in another "
                       "order than mean first, then scale")
  return value


def _heads(loc, raw):
  """The dense head(s) computing loc and raw: (loc_head, scale_head, h)."""
  loc, raw = _strip(loc), _strip(raw)
  if (loc.op is raw.op and loc.op.type in ("Split", "SplitV")
      and len(loc.op.outputs) == 2):
    split = loc.op
    axis_input = split.inputs[0] if split.type == "Split" else split.inputs[2]
    value = split.inputs[1] if split.type == "Split" else split.inputs[0]
    axis = int(_constant(axis_input))
    if axis not in (1, -1) or loc is not split.outputs[0]:
      raise _unsupported(loc, "splits the posterior's parameters in an "
                         "order or along an axis native models do not")
    head, h = dense_back(value)
    if head.activation != "linear":
      raise _unsupported(value, "activates the posterior's parameters")
    return head, None, h
  value = _sliced_halves(loc, raw)
  if value is not None:
    head, h = dense_back(value)
    if head.activation != "linear":
      raise _unsupported(value, "activates the posterior's parameters")
    return head, None, h
  loc_head, h = dense_back(loc)
  scale_head, h2 = dense_back(raw)
  if h is not h2:
    raise _unsupported(raw, "does not come from the same hidden layer as "
                       f"the posterior mean {loc.name}")
  for head, tensor in ((loc_head, loc), (scale_head, raw)):
    if head.activation != "linear":
      raise _unsupported(tensor, "activates a posterior parameter")
  return loc_head, scale_head, h


def _scale_parametrisation(scale):
  """(name, floor, raw tensor) of a posterior scale expression."""
  scale = _strip(scale)
  floor = 0.0
  if scale.op.type in _ADD_OPS:
    for i in (0, 1):
      value = _constant(scale.op.inputs[i])
      if value is not None and np.size(value) == 1:
        floor = float(value)
        scale = _strip(scale.op.inputs[1 - i])
        break
  op = scale.op
  if op.type == "Softplus":
    return "softplus", floor, op.inputs[0]
  if op.type == "Sqrt" and _strip(op.inputs[0]).op.type == "Exp":
    return "log_variance", floor, _strip(op.inputs[0]).op.inputs[0]
  if op.type == "Exp":
    arg = _strip(op.inputs[0])
    if arg.op.type in ("Mul", "RealDiv", "Div"):
      for i in (0, 1):
        if arg.op.type != "Mul" and i == 0:
          continue
        value = _constant(arg.op.inputs[i])
        if value is None or np.size(value) != 1:
          continue
        factor = float(value) if arg.op.type == "Mul" else 1 / float(value)
        other = arg.op.inputs[1 - i]
        if abs(factor - 0.5) < 1e-7:
          return "log_variance", floor, other
        if abs(factor - 1.0) < 1e-7:
          return "log_scale", floor, other
        raise _unsupported(arg, f"scales the log of the posterior scale by "
                           f"{factor:g}; native models take exp(r) or "
                           "exp(r / 2)")
    return "log_scale", floor, arg
  raise _unsupported(scale, "computes the posterior scale in a way native "
                     "models do not (they take exp(r / 2), sqrt(exp(r)), "
                     "exp(r) or softplus(r) + c)")


def _sampler(meta):
  """(eps, loc, scale, z_add) of the graph's one reparameterised sampler."""
  samplers = candidates.Candidates(meta).sampler_ops()
  if not samplers:
    raise UnsupportedGraphError(
        f"meta graph {meta.path} has no sampler (a random op whose draw "
        f"reaches the decoder){_GENERATOR_ROUTE}")
  if len(samplers) > 1:
    names = ", ".join(f"{op.name} ({op.type})" for op in samplers)
    raise UnsupportedGraphError(
        f"meta graph {meta.path} draws several random tensors into the "
        f"decoder ({names}): a mixture, flow or several stochastic layers, "
        f"which native models do not have{_GENERATOR_ROUTE}")
  random_op = samplers[0]
  eps = random_op.outputs[0]
  if random_op.type not in ("RandomStandardNormal",):
    raise _unsupported(eps, "is not a standard Normal draw; native "
                       "posteriors are Normal")
  tensor = eps
  # random_normal(mean=0, stddev=1) multiplies by 1 and adds 0 first.
  while True:
    following = [c for c in tensor.consumers()
                 if not ops.is_training_machinery(c)]
    if len(following) != 1:
      raise _unsupported(tensor, "does not reach one product "
                         "loc + scale * eps")
    step = following[0]
    others = [t for t in step.inputs if t is not tensor]
    constant = _constant(others[0]) if len(others) == 1 else None
    if step.type in ("Identity", "Reshape"):
      tensor = step.outputs[0]
    elif (step.type == "Mul" and constant is not None
          and np.all(constant == 1.0)):
      tensor = step.outputs[0]
    elif (step.type in ("Add", "AddV2") and constant is not None
          and np.all(constant == 0.0)):
      tensor = step.outputs[0]
    elif step.type == "Mul":
      muls = [step]
      break
    else:
      raise _unsupported(step.outputs[0], "follows the noise where "
                         "loc + scale * eps was expected")
  mul = muls[0]
  scale = mul.inputs[1] if mul.inputs[0] is tensor else mul.inputs[0]
  adds = [c for c in mul.outputs[0].consumers() if c.type in ("Add", "AddV2")]
  if len(adds) != 1:
    raise _unsupported(mul.outputs[0], "is not added to a posterior mean")
  add = adds[0]
  loc = add.inputs[1] if add.inputs[0] is mul.outputs[0] else add.inputs[0]
  return eps, loc, scale, add.outputs[0]


def _unclipped(tensor):
  """`tensor` before a clip to [a, 1 - a] with a <= 1e-6 (clip_by_value, or
  Maximum/Minimum with constants), which only keeps log(p) finite."""
  tensor = _strip(tensor)
  while True:
    op = tensor.op
    if op.type == "ClipByValue":
      low, high = _constant(op.inputs[1]), _constant(op.inputs[2])
      bounds = (low, high)
      inner = op.inputs[0]
    elif op.type in ("Maximum", "Minimum"):
      value = _constant(op.inputs[1])
      bounds = (value, None) if op.type == "Maximum" else (None, value)
      inner = op.inputs[0]
    else:
      return tensor
    low, high = bounds
    if ((low is not None and (np.size(low) != 1 or not 0 <= low <= 1e-6))
        or (high is not None and (np.size(high) != 1
                                  or not 1 - 1e-6 <= high <= 1))
        or (low is None and high is None)):
      return tensor
    tensor = _strip(inner)


def _feeds_logistic_loss(tensor):
  """Whether `tensor` (through reshapes) is read by
  `tf.nn.sigmoid_cross_entropy_with_logits`, whose ops TF names in a
  "logistic_loss" scope: a decoder that gives logits and leaves the sigmoid
  to its loss."""
  frontier, seen = [tensor], set()
  while frontier:
    for op in frontier.pop().consumers():
      if "logistic_loss" in op.name.split("/"):
        return True
      if op.type in ("Reshape", "Identity") and op.name not in seen:
        seen.add(op.name)
        frontier.extend(op.outputs)
  return False


def _likelihood(output):
  """("bernoulli" | "gaussian_identity", the output layer's tensor): a
  Sigmoid, or the logits a sigmoid cross-entropy loss reads (Bernoulli);
  another linear output (a Gaussian mean)."""
  tensor = _unclipped(output)
  if tensor.op.type == "Sigmoid":
    return "bernoulli", tensor
  if tensor.op.type in _ADD_OPS or tensor.op.type == "MatMul":
    if _feeds_logistic_loss(tensor):
      return "bernoulli", tensor
    return "gaussian_identity", tensor
  raise _unsupported(tensor, "ends the decoder with an output native "
                     "likelihoods do not take (sigmoid for a Bernoulli, "
                     "none for a Gaussian mean)")


def _before_reshapes(tensor):
  tensor = _strip(tensor)
  while tensor.op.type == "Reshape":
    tensor = _strip(tensor.op.inputs[0])
  return tensor


def _conv_layer(tensor, op_type, strides):
  """Reads act(conv(x, W) + b): (Dense of the filter, conv op, x)."""
  tensor = _strip(tensor)
  activation = "linear"
  if tensor.op.type in ACTIVATION_OPS and tensor.op.type != "LeakyRelu":
    activation = ACTIVATION_OPS[tensor.op.type]
    tensor = _strip(tensor.op.inputs[0])
  bias = None
  if tensor.op.type in _ADD_OPS:
    left, right = tensor.op.inputs
    bias = variable_name(right) or variable_name(left)
    tensor = _strip(left if variable_name(right) else right)
  conv = tensor.op
  if conv.type != op_type:
    raise _unsupported(tensor, f"is not the {op_type} a native conv decoder "
                       "has here")
  weight_index = 1
  data_index = 0 if op_type == "Conv2D" else 2
  weight = variable_name(conv.inputs[weight_index])
  shape = conv.inputs[weight_index].shape.as_list()
  if (weight is None or list(conv.get_attr("strides")) != list(strides)
      or conv.get_attr("padding") != b"SAME" or shape[:2] != [3, 3]
      or conv.get_attr("data_format") != b"NHWC"):
    raise _unsupported(tensor, f"is not a 3x3 SAME NHWC convolution with "
                       f"strides {strides[1]} of a variable filter, as native "
                       "conv decoders have")
  units = shape[3] if op_type == "Conv2D" else shape[2]
  return Dense(weight, bias, activation, int(units)), conv.inputs[data_index]


def _conv_decoder(logits, latent):
  """The layers of a conv decoder: ([dense, upsample, out], conv tuple)."""
  out, up = _conv_layer(logits, "Conv2D", [1, 1, 1, 1])
  upsample, grid = _conv_layer(up, "Conv2DBackpropInput", [1, 2, 2, 1])
  grid = _strip(grid)
  if grid.op.type != "Reshape" or grid.shape.rank != 4:
    raise _unsupported(grid, "does not reshape the dense layer into the "
                       "transposed convolution's input")
  dense, source = dense_back(grid.op.inputs[0])
  if _before_reshapes(source) is not _before_reshapes(latent):
    raise _unsupported(source, f"feeds the conv decoder instead of z "
                       f"{latent.name}")
  if out.activation != "linear" or dense.activation != upsample.activation:
    raise _unsupported(logits, "activates a conv decoder's layers unlike "
                       "native conv decoders (one activation after the "
                       "dense layer and the transposed convolution)")
  shape = logits.shape.as_list()
  if len(shape) != 4 or None in shape[1:]:
    raise _unsupported(logits, "has no static image shape")
  image = tuple(shape[1:])
  hidden = grid.shape.as_list()[-1]
  if grid.shape.as_list()[1:3] != [-(-image[0] // 2), -(-image[1] // 2)]:
    raise _unsupported(grid, "is not half the image's size, as native conv "
                       "decoders' first map is")
  return [dense, upsample, out], (hidden, upsample.units, image)


def _conv_chain_decoder(logits, latent):
  """Any conv decoder: dense, reshape, convolutions and transposed
  convolutions. Returns ([dense, *convs], conv text)."""
  layers, outputs = [], []
  tensor = logits
  while True:
    found = conv_back(tensor)
    if found is None:
      break
    layers.append(found[0])
    outputs.append(_strip(tensor))
    tensor = found[1]
  layers, outputs = layers[::-1], outputs[::-1]
  grid = _strip(tensor)
  if grid.op.type != "Reshape" or grid.shape.rank != 4:
    raise _unsupported(grid, "does not reshape a dense layer into the conv "
                       "decoder's first map")
  dense, source = dense_back(grid.op.inputs[0])
  if _before_reshapes(source) is not _before_reshapes(latent):
    raise _unsupported(source, f"feeds the conv decoder instead of z "
                       f"{latent.name}")
  if layers[-1].activation != "linear":
    raise _unsupported(logits, "activates the decoder's output layer twice")
  first = grid.shape.as_list()[1:]
  if None in first:
    raise _unsupported(grid, "has no static map shape")
  size = first[:2]
  for layer, output in zip(layers, outputs):
    spec = nets.ConvLayer(layer.kind, layer.units, layer.kernel, layer.stride,
                          layer.activation, layer.padding)
    size = [nets.conv_output_size(n, spec) for n in size]
    shape = output.shape.as_list()
    if len(shape) != 4 or shape[1:3] != size:
      raise _unsupported(output, f"has maps {shape[1:3]} where native "
                         f"{layer.padding} {layer.kind} layers from "
                         f"{first[:2]} give {size}")
  return [dense, *layers], layers_text([dense, *layers], tuple(first))


def _decoder(output, latent):
  """Dense layers from `latent` up to `output`: ([Dense], likelihood,
  conv tuple or None; see `Anatomy.decoder_conv`)."""
  likelihood, tensor = _likelihood(output)
  if tensor.op.type == "Sigmoid":
    tensor = _strip(tensor.op.inputs[0])
  stripped = _strip(tensor)
  if conv_back(tensor) is not None:
    try:
      layers, conv = _conv_decoder(tensor, latent)
      return layers, likelihood, conv
    except UnsupportedGraphError:
      layers, text = _conv_chain_decoder(tensor, latent)
      return layers, likelihood, text
  layers = []
  target = _before_reshapes(latent)
  while True:
    dense, tensor = dense_back(tensor)
    layers.append(dense)
    stripped = _before_reshapes(tensor)
    if stripped is target:
      break
    if _is_input(stripped) or stripped.op.type in ops.RANDOM_OP_TYPES:
      raise _unsupported(stripped, f"reaches the decoder, not z "
                         f"{latent.name}")
  layers = layers[::-1]
  if layers[-1].activation != "linear":
    raise _unsupported(output, "activates the decoder's output layer twice")
  if any(d.activation == "linear" for d in layers[:-1]):
    raise _unsupported(output, "has a decoder hidden layer without an "
                       "activation")
  return layers, likelihood, None


def _loss(meta):
  """(loss, per-example tensor or None, its sign): what the optimizer
  minimises; the per-example loss is sign * the tensor.

  TF1's gradients start from `gradients/grad_ys_0` (ones shaped like the
  loss), consumed in the name scope `gradients/<loss op>_grad/`.
  """
  found = []
  for op in meta.graph.get_operations():
    if op.type != "Fill" or op.name.split("/")[-1] != "grad_ys_0":
      continue
    for consumer in op.outputs[0].consumers():
      parts = consumer.name.split("/")[1:]
      grads = [i for i, p in enumerate(parts) if p.endswith("_grad")]
      if not grads:
        continue
      name = "/".join(parts[:grads[0]] + [parts[grads[0]][:-len("_grad")]])
      try:
        loss_op = meta.graph.get_operation_by_name(name)
      except KeyError:
        continue
      if loss_op not in found:
        found.append(loss_op)
  if len(found) != 1 or found[0].outputs[0].shape.rank != 0:
    return None, None, 1.0
  loss = found[0].outputs[0]
  stripped = _strip(loss)
  sign = 1.0
  if stripped.op.type == "Neg":
    # -mean(elbo): the per-example loss is -elbo.
    stripped, sign = _strip(stripped.op.inputs[0]), -1.0
  if stripped.op.type == "Mean" and stripped.op.inputs[0].shape.rank == 1:
    return loss, stripped.op.inputs[0], sign
  return loss, None, 1.0


def _targets(meta, placeholder, loss):
  """Other image placeholders the loss reads (a denoising graph's clean
  target beside its input): fed the same images in verification."""
  if not loss:
    return ()
  return tuple(
      op.outputs[0] for op in meta.ancestors(loss)
      if op.type == "Placeholder" and op is not placeholder.op
      and op.outputs[0].dtype.is_floating
      and op.outputs[0].shape.rank == placeholder.shape.rank
      and op.outputs[0].shape.as_list()[1:] == placeholder.shape.as_list()[1:])


# Ops through which a log-variance head v may reach the loss: exp(v) (or
# exp(c * v)), and the additive log term (log 2pi + v + ...).
_LOG_VARIANCE_TERMS = ("Add", "AddV2", "Sub", "Neg", "Sum")


def _live_consumers(tensor, live):
  """Consumers of `tensor` among the ops `live` (None: any op outside the
  gradients' name scopes)."""
  if live is None:
    return [c for c in tensor.consumers()
            if not c.name.split("/")[0].startswith("gradients")]
  return [c for c in tensor.consumers() if c in live]


def _layer_end(matmul, live):
  """(pre-activation tensor, layer output) of the dense layer whose
  MatMul is `matmul`: its bias add and activation, followed forwards."""
  tensor = matmul.outputs[0]
  for consumer in _live_consumers(tensor, live):
    if consumer.type in _ADD_OPS and any(
        variable_name(t) for t in consumer.inputs if t is not tensor):
      tensor = consumer.outputs[0]
      break
  out = tensor
  for consumer in _live_consumers(tensor, live):
    if consumer.type in ACTIVATION_OPS:
      out = consumer.outputs[0]
      break
  return tensor, out


def _scalar_factor(op, tensor):
  """Whether `op` multiplies or divides `tensor` by a scalar constant."""
  return op.type in ("Mul", "RealDiv") and any(
      _constant(t) is not None and np.size(_constant(t)) == 1
      for t in op.inputs if t is not tensor)


def _path_to_exp(tensor, live, depth=3):
  """The ops from `tensor` forward to the first Exp it feeds, within
  `depth` ops (the Exp excluded), or None."""
  todo = [(tensor, [])]
  while todo:
    tensor, path = todo.pop(0)
    for consumer in _live_consumers(tensor, live):
      if consumer.type == "Exp":
        return path
      if len(path) + 1 < depth:
        todo.append((consumer.outputs[0], path + [consumer]))
  return None


def _check_log_variance_use(tensor, live, depth=0):
  """Raises naming the first op that takes the log-variance `tensor` into
  anything but exp(c * v) and the additive log term."""
  for consumer in _live_consumers(tensor, live):
    if consumer.type in ("Exp", *_LOG_VARIANCE_TERMS, *_PASS_THROUGH):
      if consumer.type in _PASS_THROUGH:
        _check_log_variance_use(consumer.outputs[0], live, depth)
      continue
    if _scalar_factor(consumer, tensor) and depth < 2:
      _check_log_variance_use(consumer.outputs[0], live, depth + 1)
      continue
    raise _unsupported(
        tensor, f"is the decoder's log-variance head v, and goes through "
        f"{consumer.name} ({consumer.type}); native gaussian_log_variance "
        "takes the head's linear output v as log sigma^2 (scale exp(v / 2))")


def _two_heads(meta, sampled, live):
  """Reads a decoder with a mean head and a log-variance head on one hidden
  layer (a Gaussian with a learned per-pixel variance).

  Returns:
    None if the decoder has no two heads; else (mean output tensor, the
    likelihood name, the log-variance head's `Dense`, its output v).

  Raises:
    UnsupportedGraphError: Naming the op, for two or more heads that are
      not a mean and a linear log-variance used as exp(v).
  """
  outputs = [t for t, _ in candidates.Candidates(meta).output_candidates()
             if sampled.op in meta.ancestors([t])]
  for tensor in outputs:
    try:
      head, source = dense_back(_unclipped(tensor))
    except UnsupportedGraphError:
      continue
    heads = [c for c in _strip(source).consumers()
             if c.type == "MatMul" and variable_name(c.inputs[1])
             and c.outputs[0].shape[-1] == head.units]
    if len(heads) < 2:
      continue
    names = ", ".join(f"{c.name} ({variable_name(c.inputs[1])})"
                      for c in heads)
    ends = [_layer_end(c, live) for c in heads]
    paths = [_path_to_exp(out, live) for _, out in ends]
    variances = [i for i, path in enumerate(paths) if path is not None]
    if len(heads) != 2 or len(variances) != 1:
      raise UnsupportedGraphError(
          f"{tensor.name} ({_strip(tensor).op.type}) is one of "
          f"{len(heads)} decoder output heads on the same layer ({names}), "
          "not a mean head beside one log-variance head v used as exp(v) "
          "(a Gaussian with a learned per-pixel variance, "
          f"gaussian_log_variance){_GENERATOR_ROUTE}")
    pre, out = ends[variances[0]]
    if out is not pre:
      raise _unsupported(out, "activates the decoder's log-variance head; "
                         "native gaussian_log_variance takes its linear "
                         "output v as log sigma^2")
    source = out
    for op in paths[variances[0]]:
      if op.type not in ("Neg", *_PASS_THROUGH) and not _scalar_factor(
          op, source):
        raise _unsupported(
            out, f"is the decoder's log-variance head v, and goes through "
            f"{op.name} ({op.type}) before exp; native "
            "gaussian_log_variance takes exp(v) of the head's linear output")
      source = op.outputs[0]
    _check_log_variance_use(out, live)
    variance_head, _ = dense_back(out)
    mean = ends[1 - variances[0]][1]
    if mean.op.type not in ("Sigmoid", *_ADD_OPS, "MatMul"):
      raise _unsupported(mean, "ends the decoder's mean head; native "
                         "gaussian_log_variance takes a sigmoid or no "
                         "activation")
    likelihood = ("gaussian_log_variance" if mean.op.type == "Sigmoid"
                  else "gaussian_log_variance_identity")
    return mean, likelihood, variance_head, out
  return None


def read_anatomy(meta):
  """Reads the whole VAE out of a TF1 meta graph.

  Args:
    meta: A `graph.MetaGraph`.

  Returns:
    An `Anatomy`.

  Raises:
    UnsupportedGraphError: Naming the first op that has no native
      counterpart, and why.
    errors.TfvaeError: If the decoder's ends cannot be found.
  """
  eps, loc, scale, sampled = _sampler(meta)
  posterior_scale, floor, raw = _scale_parametrisation(scale)
  loc_head, scale_head, h = _heads(loc, raw)
  placeholder, encoder, encoder_convs = _trunk(h)
  if scale_head is not None and loc_head.units != scale_head.units:
    raise _unsupported(raw, "has another width than the posterior mean")
  loss, per_example, sign = _loss(meta)
  # The decoder the sampler feeds (a generation path built again on a
  # latent placeholder shares its weights but is not what the loss sees).
  variance_head = log_variance = None
  try:
    latent, output = candidates.find_ends(meta, latent_tensor=sampled.name)
  except errors.TfvaeError:
    two = _two_heads(meta, sampled, set(meta.ancestors([loss])) if loss
                     is not None else None)
    if two is None:
      raise
    output, likelihood, variance_head, log_variance = two
    latent = sampled
  if variance_head is None:
    decoder, likelihood, conv = _decoder(output, latent)
  else:
    decoder, _, conv = _decoder(output, latent)
  decoder_convs = None
  if isinstance(conv, str):
    decoder_convs, conv = conv, None
  pixels = decoder[-1].units
  shape = placeholder.shape
  if decoder_convs is not None:
    image_shape = tuple(_strip(output).shape.as_list()[1:])
    pixels = int(np.prod(image_shape))
  if conv is not None:
    image_shape = conv[2]
    pixels = int(np.prod(image_shape))
    if shape.rank == 2 and shape[-1] != pixels:
      raise _unsupported(output, f"has images {list(image_shape)} but the "
                         f"input {placeholder.name} takes {shape[-1]} values")
  elif decoder_convs is not None:
    if shape.rank == 2 and shape[-1] != pixels:
      raise _unsupported(output, f"has images {list(image_shape)} but the "
                         f"input {placeholder.name} takes {shape[-1]} values")
  elif shape.rank == 4 and None not in shape.as_list()[1:]:
    image_shape = tuple(shape.as_list()[1:])
  else:
    side = int(round(pixels ** 0.5))
    if side * side != pixels:
      raise _unsupported(output, f"has {pixels} pixels, not a square image")
    image_shape = (side, side, 1)
  if np.prod(image_shape) != pixels:
    raise _unsupported(output, f"has {pixels} pixels but the input "
                       f"{placeholder.name} takes images {list(image_shape)}")
  targets = _targets(meta, placeholder, [loss] if loss is not None else [])
  return Anatomy(
      input=placeholder, image_shape=image_shape, encoder=encoder,
      loc_head=loc_head, scale_head=scale_head,
      posterior_scale=posterior_scale, scale_floor=floor, noise=eps,
      loc=loc, scale=scale, latent=latent, decoder=decoder, output=output,
      likelihood=likelihood, loss=loss, per_example_loss=per_example,
      loss_sign=sign, targets=targets,
      feeds=dict(meta.inference_feeds()), decoder_conv=conv,
      encoder_conv_layers=encoder_convs, decoder_conv_layers=decoder_convs,
      log_variance_head=variance_head, log_variance=log_variance,
      output_logits=(likelihood == "bernoulli"
                     and _unclipped(output).op.type != "Sigmoid"))
