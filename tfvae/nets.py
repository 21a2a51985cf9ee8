"""Neural network building blocks as `tf.Module`s.

Weights use Glorot (Xavier) uniform initialisation: for a layer with fan_in
inputs and fan_out outputs per weight, W ~ U(-a, a) with
a = sqrt(6 / (fan_in + fan_out)), so Var(W) = 2 / (fan_in + fan_out), which keeps
activation and gradient variances roughly constant across tanh layers
(Glorot & Bengio, 2010). For convolutions fan_in = k_h * k_w * in_channels and
fan_out = k_h * k_w * out_channels.

Biases start at zero. Random biases (as some TF1 VAE code draws them) shift every
unit by a random offset at step 0; with tanh or sigmoid that pushes units
towards saturation before training has begun and adds no useful symmetry
breaking, which the random weights already provide.
"""
import collections
import math

import tensorflow as tf

# The encoder/decoder architectures `encoder_net` and `decoder_net` build.
NETWORKS = ("mlp", "conv")

ACTIVATIONS = {
    "tanh": tf.nn.tanh,
    "relu": tf.nn.relu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "sigmoid": tf.nn.sigmoid,
    "softplus": tf.nn.softplus,
    "leaky_relu": tf.nn.leaky_relu,
    "gelu": tf.nn.gelu,
    "swish": tf.nn.silu,
}


def glorot_uniform(shape, fan_in, fan_out, dtype=tf.float32):
  """Draws a Glorot-uniform initial value.

  Args:
    shape: Shape of the weight.
    fan_in: Inputs feeding each output unit.
    fan_out: Outputs each input unit feeds.
    dtype: Float dtype.

  Returns:
    A Tensor of `shape` with entries ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
  """
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return tf.random.uniform(shape, -limit, limit, dtype=dtype)


def get_activation(name):
  """Returns the activation function called `name` (see `ACTIVATIONS`)."""
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f"unknown activation {name!r}; choose one of "
                     f"{', '.join(sorted(ACTIVATIONS))}") from None


class Linear(tf.Module):
  """An affine map y = x W + b.

  Args:
    input_size: Width of x.
    output_size: Width of y.
    name: Module name.
  """

  def __init__(self, input_size, output_size, name=None):
    super().__init__(name=name)
    self.input_size = input_size
    self.output_size = output_size
    with self.name_scope:
      self.w = tf.Variable(
          glorot_uniform([input_size, output_size], input_size, output_size),
          name="w")
      self.b = tf.Variable(tf.zeros([output_size]), name="b")

  @tf.Module.with_name_scope
  def __call__(self, x):
    """Maps x [B, input_size] to [B, output_size], in x's dtype."""
    # An add, not BiasAdd: the bias gradient is then a Sum, which measured
    # faster here than BiasAddGrad (grappler fuses neither into the matmul).
    return tf.matmul(x, tf.cast(self.w, x.dtype)) + tf.cast(self.b, x.dtype)


class MLP(tf.Module):
  """A stack of `Linear` layers with an activation between them.

  Args:
    input_size: Width of the input.
    output_sizes: Widths of the layers, the last being the output width.
    activation: Name of the activation (see `ACTIVATIONS`) between layers,
      or a sequence of names, one after each hidden layer (a migrated TF1
      or Keras network whose layers differ).
    activate_final: Whether to apply the activation after the last layer too.
    name: Module name.
  """

  def __init__(self, input_size, output_sizes, activation="tanh",
               activate_final=False, name=None):
    super().__init__(name=name)
    if isinstance(activation, str):
      self._activations = [get_activation(activation)] * len(output_sizes)
    else:
      if len(activation) != len(output_sizes) - 1:
        raise ValueError(f"{len(activation)} activations for "
                         f"{len(output_sizes) - 1} hidden layers")
      self._activations = [get_activation(a) for a in activation]
      self._activations.append(self._activations[-1] if activation else None)
    self._activation = self._activations[0] if self._activations else None
    self._activate_final = activate_final
    with self.name_scope:
      sizes = [input_size, *output_sizes]
      self.layers = [Linear(n_in, n_out, name=f"linear_{i}")
                     for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))]

  @tf.Module.with_name_scope
  def __call__(self, x):
    """Maps x [B, input_size] to [B, output_sizes[-1]]."""
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1 or self._activate_final:
        x = self._activations[i](x)
    return x


class Conv2D(tf.Module):
  """A 2-D convolution, NHWC.

  Args:
    input_channels: Channels of the input.
    output_channels: Channels of the output.
    kernel_size: Side of the square kernel.
    stride: Stride in both spatial dimensions.
    name: Module name.
    padding: "SAME" or "VALID".
  """

  def __init__(self, input_channels, output_channels, kernel_size=3, stride=1,
               name=None, padding="SAME"):
    super().__init__(name=name)
    self.stride = stride
    self.padding = padding
    k = kernel_size
    with self.name_scope:
      self.w = tf.Variable(
          glorot_uniform([k, k, input_channels, output_channels],
                         k * k * input_channels, k * k * output_channels),
          name="w")
      self.b = tf.Variable(tf.zeros([output_channels]), name="b")

  @tf.Module.with_name_scope
  def __call__(self, x):
    """Maps x [B, H, W, C_in] to [B, ceil(H/s), ceil(W/s), C_out] (SAME;
    VALID: ceil((H - k + 1) / s)), in x's dtype."""
    # BiasAdd rather than +: grappler fuses its gradient into the filter
    # gradient (Conv2DBackpropFilterWithBias) instead of a separate Sum.
    return tf.nn.bias_add(
        tf.nn.conv2d(x, tf.cast(self.w, x.dtype), self.stride, self.padding),
        tf.cast(self.b, x.dtype))


class Conv2DTranspose(tf.Module):
  """A transposed 2-D convolution, NHWC.

  Args:
    input_channels: Channels of the input.
    output_channels: Channels of the output.
    kernel_size: Side of the square kernel.
    stride: Upsampling factor in both spatial dimensions.
    name: Module name.
    padding: "SAME" or "VALID".
  """

  def __init__(self, input_channels, output_channels, kernel_size=3, stride=1,
               name=None, padding="SAME"):
    super().__init__(name=name)
    self.stride = stride
    self.padding = padding
    k = kernel_size
    with self.name_scope:
      # conv2d_transpose's filter is [k, k, out, in].
      self.w = tf.Variable(
          glorot_uniform([k, k, output_channels, input_channels],
                         k * k * input_channels, k * k * output_channels),
          name="w")
      self.b = tf.Variable(tf.zeros([output_channels]), name="b")

  @tf.Module.with_name_scope
  def __call__(self, x, output_hw):
    """Maps x [B, h, w, C_in] to [B, H, W, C_out] with (H, W) = `output_hw`,
    in x's dtype."""
    batch = tf.shape(x)[0]
    output_shape = tf.stack(
        [batch, output_hw[0], output_hw[1], self.w.shape[2]])
    return tf.nn.bias_add(
        tf.nn.conv2d_transpose(x, tf.cast(self.w, x.dtype), output_shape,
                               self.stride, self.padding),
        tf.cast(self.b, x.dtype))


def conv_chain(x, convs, activations):
  """Applies each convolution of `convs` and then its activation.

  Args:
    x: [B, H, W, C] maps.
    convs: `Conv2D` modules (or any x -> x' callables).
    activations: One function per convolution; None leaves its output
      linear.

  Returns:
    The last convolution's activated output.
  """
  for conv, activation in zip(convs, activations):
    x = conv(x)
    if activation is not None:
      x = activation(x)
  return x


def _activation_or_none(name):
  return None if name == "linear" else get_activation(name)


# One layer of a `conv_layers` text: conv or conv_transpose.
CONV_KINDS = ("conv", "conv_transpose")


class ConvLayer(collections.namedtuple(
    "ConvLayer", "kind channels kernel stride activation padding")):
  """One layer of `parse_conv_layers`: kind "dense" (channels the map
  (H, W, C) or (units,)) or one of `CONV_KINDS`; padding "SAME" or
  "VALID"."""


def conv_output_size(size, layer):
  """The side a layer of `layer`'s kind, kernel, stride and padding makes
  of a map of side `size`."""
  k, s = layer.kernel, layer.stride
  if layer.kind == "conv_transpose":
    return size * s if layer.padding == "SAME" else (size - 1) * s + k
  return math.ceil((size if layer.padding == "SAME" else size - k + 1) / s)


def parse_conv_layers(text):
  """Reads a conv layer list such as "conv:32:4:2:leaky_relu,...".

  Each comma-separated item is KIND:CHANNELS:KERNEL:STRIDE:ACTIVATION with
  KIND one of `CONV_KINDS` (square kernels, SAME padding; :valid after the
  activation for VALID) or, first in a
  decoder's list, dense:HxWxC:ACTIVATION, the dense layer from z to the
  first map, or, after an encoder's convolutions, dense:UNITS:ACTIVATION,
  a dense hidden layer on the flattened map. ACTIVATION is an
  `ACTIVATIONS` name or "linear".

  Returns:
    [`ConvLayer`].

  Raises:
    ValueError: Naming the item that does not parse.
  """
  layers = []
  for item in text.split(","):
    parts = item.strip().split(":")
    try:
      if parts[0] == "dense" and len(parts) == 3:
        shape = tuple(int(n) for n in parts[1].split("x"))
        if len(shape) not in (1, 3) or min(shape) <= 0:
          raise ValueError
        layers.append(ConvLayer("dense", shape, None, None, parts[2], None))
      elif parts[0] in CONV_KINDS and len(parts) in (5, 6):
        channels, kernel, stride = (int(n) for n in parts[1:4])
        padding = parts[5].upper() if len(parts) == 6 else "SAME"
        if min(channels, kernel, stride) <= 0 or padding not in ("SAME",
                                                                 "VALID"):
          raise ValueError
        layers.append(ConvLayer(parts[0], channels, kernel, stride, parts[4],
                                padding))
      else:
        raise ValueError
      if layers[-1].activation != "linear":
        get_activation(layers[-1].activation)
    except ValueError:
      raise ValueError(
          f"conv layer {item!r} is not KIND:CHANNELS:KERNEL:STRIDE:ACTIVATION"
          "[:valid] "
          f"(KIND one of {', '.join(CONV_KINDS)}) or dense:HxWxC:ACTIVATION "
          "or dense:UNITS:ACTIVATION") from None
  return layers


class ConvEncoderNet(tf.Module):
  """The convolutional encoder body of the classic Keras conv VAE.

  conv 32 -> conv 64 stride 2 -> conv 64 -> conv 64 -> flatten -> dense 32
  -> dense output_size; 3x3 kernels, SAME padding.

  Args:
    image_shape: (H, W, C) of the input images.
    output_size: Width of the output (e.g. 2 * latent size).
    activation: Activation name between layers.
    filters: Channels of the four conv layers.
    dense_size: Width of the dense layer before the output.
    name: Module name.
  """

  def __init__(self, image_shape, output_size, activation="relu",
               filters=(32, 64, 64, 64), dense_size=32, name=None):
    super().__init__(name=name)
    height, width, channels = image_shape
    self._activation = get_activation(activation)
    strides = (1, 2, 1, 1)
    with self.name_scope:
      self.convs = []
      in_ch = channels
      for i, (out_ch, stride) in enumerate(zip(filters, strides)):
        self.convs.append(Conv2D(in_ch, out_ch, 3, stride, name=f"conv_{i}"))
        in_ch = out_ch
      flat = math.ceil(height / 2) * math.ceil(width / 2) * in_ch
      self.dense = Linear(flat, dense_size, name="dense")
      self.out = Linear(dense_size, output_size, name="out")

  @tf.Module.with_name_scope
  def __call__(self, images):
    """Maps images [B, H, W, C] to [B, output_size]."""
    x = conv_chain(images, self.convs, [self._activation] * len(self.convs))
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return self.out(self._activation(self.dense(x)))


class ConvDecoderNet(tf.Module):
  """The convolutional decoder body of the classic Keras conv VAE.

  dense to (H/2, W/2, 64) -> reshape -> transposed conv 32 stride 2 -> conv to
  `output_channels`; 3x3 kernels, SAME padding.

  Args:
    latent_size: Width of z.
    image_shape: (H, W, C) of the images produced.
    output_channels: Channels of the output map (C times the number of
      likelihood parameters per pixel).
    activation: Activation name between layers.
    hidden_channels: Channels after the dense layer.
    upsample_channels: Channels of the transposed convolution.
    name: Module name.
  """

  def __init__(self, latent_size, image_shape, output_channels,
               activation="relu", hidden_channels=64, upsample_channels=32,
               name=None):
    super().__init__(name=name)
    height, width, _ = image_shape
    self._activation = get_activation(activation)
    self._image_hw = (height, width)
    self._hidden_shape = (math.ceil(height / 2), math.ceil(width / 2),
                          hidden_channels)
    with self.name_scope:
      self.dense = Linear(latent_size, math.prod(self._hidden_shape),
                          name="dense")
      self.upsample = Conv2DTranspose(hidden_channels, upsample_channels, 3, 2,
                                      name="upsample")
      self.out = Conv2D(upsample_channels, output_channels, 3, 1, name="out")

  @tf.Module.with_name_scope
  def __call__(self, z):
    """Maps z [B, latent_size] to [B, H, W, output_channels]."""
    x = self._activation(self.dense(z))
    x = tf.reshape(x, [-1, *self._hidden_shape])
    x = self._activation(self.upsample(x, self._image_hw))
    return self.out(x)


def halvings(size, count):
  """[size, ceil(size / 2), ...]: `count` + 1 sizes of SAME stride-2 maps."""
  sizes = [size]
  for _ in range(count):
    sizes.append(math.ceil(sizes[-1] / 2))
  return sizes


class ConvStackEncoderNet(tf.Module):
  """A stack of convolutions for images of any size (--conv_channels).

  conv channels[0] /s_0 -> ... -> conv channels[-1] /s_k -> flatten -> dense
  output_size; SAME padding, so an H x W input leaves ceil(H / prod(s)) x
  ceil(W / prod(s)). By default every kernel is 3x3, every stride 2 and
  every activation `activation`; a migrated TF1 network gives its own per
  layer.

  Args:
    image_shape: (H, W, C) of the input images.
    output_size: Width of the output (e.g. 2 * latent size).
    channels: Output channels of each convolution, k >= 1 of them.
    activation: Activation name between layers.
    name: Module name.
    kernel_sizes: k kernel sides; default 3 each.
    strides: k strides; default 2 each.
    activations: k activation names ("linear" for none); default
      `activation` each.
    dense_sizes: Widths of dense hidden layers between the flattened map
      and the output (a migrated TF1 encoder's); default none.
    dense_activations: Their activation names.
    paddings: k paddings, "SAME" or "VALID"; default "SAME" each.
  """

  denses = ()

  def __init__(self, image_shape, output_size, channels, activation="relu",
               name=None, kernel_sizes=None, strides=None, activations=None,
               dense_sizes=(), dense_activations=(), paddings=None):
    super().__init__(name=name)
    height, width, in_ch = image_shape
    depth = len(channels)
    kernel_sizes = kernel_sizes or (3,) * depth
    strides = strides or (2,) * depth
    paddings = paddings or ("SAME",) * depth
    self._activations = [_activation_or_none(a) for a in
                         (activations or (activation,) * depth)]
    with self.name_scope:
      self.convs = []
      for i, (out_ch, k, stride, padding) in enumerate(
          zip(channels, kernel_sizes, strides, paddings)):
        self.convs.append(Conv2D(in_ch, out_ch, k, stride, name=f"conv_{i}",
                                 padding=padding))
        in_ch = out_ch
        layer = ConvLayer("conv", out_ch, k, stride, None, padding)
        height = conv_output_size(height, layer)
        width = conv_output_size(width, layer)
      width = height * width * in_ch
      denses = []
      for i, units in enumerate(dense_sizes):
        denses.append(Linear(width, units, name=f"dense_{i}"))
        width = units
      if denses:
        # Set only when there are some: a run's checkpoint then holds the
        # same objects as before dense layers existed.
        self.denses = denses
      self.out = Linear(width, output_size, name="out")
    self._dense_activations = [_activation_or_none(a)
                               for a in dense_activations]

  @tf.Module.with_name_scope
  def __call__(self, images):
    """Maps images [B, H, W, C] to [B, output_size]."""
    x = conv_chain(images, self.convs, self._activations)
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    x = conv_chain(x, self.denses, self._dense_activations)
    return self.out(x)


def conv_stack_encoder(image_shape, output_size, layers):
  """A `ConvStackEncoderNet` from `parse_conv_layers` output: conv layers,
  then any dense:UNITS layers."""
  convs = [layer for layer in layers if layer.kind == "conv"]
  denses = layers[len(convs):]
  if (not convs or any(d.kind != "dense" or len(d.channels) != 1
                       for d in denses)):
    raise ValueError("an encoder's layers must be conv:... layers, then any "
                     "dense:UNITS:ACTIVATION layers")
  return ConvStackEncoderNet(
      image_shape, output_size, [c.channels for c in convs],
      kernel_sizes=[c.kernel for c in convs],
      strides=[c.stride for c in convs],
      activations=[c.activation for c in convs],
      paddings=[c.padding for c in convs],
      dense_sizes=[d.channels[0] for d in denses],
      dense_activations=[d.activation for d in denses], name="conv")


class ConvStackDecoderNet(tf.Module):
  """The mirror of `ConvStackEncoderNet`, back to exactly H x W.

  dense to (ceil(H / 2^k), ceil(W / 2^k), channels[-1]) -> transposed convs
  /2 with channels[-2], ..., channels[0], channels[0], each to the size of
  the encoder's map at that depth -> conv 3x3 to `output_channels`. Or, with
  `layers` (a migrated TF1 decoder), any chain: dense to a map, then
  convolutions and transposed convolutions with their own channels, kernel,
  stride, activation and padding (`conv_output_size`), the last one giving
  `output_channels`.

  Args:
    latent_size: Width of z.
    image_shape: (H, W, C) of the images produced.
    output_channels: Channels of the output map (C times the likelihood's
      parameters per pixel).
    channels: The encoder's channels, k >= 1 of them (in encoder order).
    activation: Activation name between layers.
    name: Module name.
    layers: `parse_conv_layers` output, dense first; overrides `channels`
      and `activation` (the last layer's channels become
      `output_channels`).
  """

  def __init__(self, latent_size, image_shape, output_channels, channels=(),
               activation="relu", name=None, layers=None):
    super().__init__(name=name)
    height, width, _ = image_shape
    if layers is None:
      depth = len(channels)
      heights, widths = halvings(height, depth), halvings(width, depth)
      outs = [channels[j - 1] if j > 0 else channels[0]
              for j in range(depth - 1, -1, -1)]
      layers = [ConvLayer("dense", (heights[-1], widths[-1], channels[-1]),
                          None, None, activation, None)]
      layers += [ConvLayer("conv_transpose", c, 3, 2, activation, "SAME")
                 for c in outs]
      layers.append(ConvLayer("conv", output_channels, 3, 1, "linear",
                              "SAME"))
      sizes = [(heights[j], widths[j]) for j in range(depth - 1, -1, -1)]
      sizes.append((height, width))
    else:
      sizes, (h, w) = [], layers[0].channels[:2]
      for layer in layers[1:]:
        h, w = conv_output_size(h, layer), conv_output_size(w, layer)
        sizes.append((h, w))
      if sizes[-1] != (height, width):
        raise ValueError(f"conv layers {layers} end at {sizes[-1]}, not the "
                         f"image's {(height, width)}")
    self._hidden_shape = layers[0].channels
    self._sizes = sizes
    self._dense_activation = _activation_or_none(layers[0].activation)
    self._activations = [_activation_or_none(layer.activation)
                         for layer in layers[1:]]
    with self.name_scope:
      self.dense = Linear(latent_size, math.prod(self._hidden_shape),
                          name="dense")
      self.upsamples = []
      in_ch = self._hidden_shape[-1]
      # The last layer gives the likelihood's parameters: output_channels.
      last = len(layers) - 2
      for i, spec in enumerate(layers[1:]):
        out_ch = output_channels if i == last else spec.channels
        kind = spec.kind
        cls = Conv2DTranspose if kind == "conv_transpose" else Conv2D
        layer = cls(in_ch, out_ch, spec.kernel, spec.stride,
                    name="out" if i == last else
                    (f"upsample_{i}" if kind == "conv_transpose"
                     else f"conv_{i}"), padding=spec.padding)
        if i == last:
          self.out = layer
        else:
          self.upsamples.append(layer)
        in_ch = out_ch

  @tf.Module.with_name_scope
  def __call__(self, z):
    """Maps z [B, latent_size] to [B, H, W, output_channels]."""
    x = self.dense(z)
    if self._dense_activation is not None:
      x = self._dense_activation(x)
    x = tf.reshape(x, [-1, *self._hidden_shape])
    for layer, size, activation in zip([*self.upsamples, self.out],
                                       self._sizes, self._activations):
      x = (layer(x, size) if isinstance(layer, Conv2DTranspose)
           else layer(x))
      if activation is not None:
        x = activation(x)
    return x


def _check_network(network):
  if network not in NETWORKS:
    raise ValueError(f"unknown network {network!r}; choose mlp or conv")


def encoder_net(network, image_shape, output_size, hidden_sizes=(512,),
                activation="tanh", condition_size=0, conv_channels=()):
  """The network of an encoder: images (and a condition) to features.

  An "mlp" takes the flattened pixels [B, H * W * C] with `condition_size`
  features appended, [B, H * W * C + condition_size]; a "conv" takes the
  images with the condition as extra channels, [B, H, W, C + condition_size].
  Either returns [B, output_size]. The net is named after its architecture
  ("mlp" or "conv"), the names TF1 weight mappings and checkpoints know.

  Args:
    network: One of `NETWORKS`.
    image_shape: (H, W, C) of the images.
    output_size: Width of the output (e.g. 2 * latent size).
    hidden_sizes: Hidden widths (mlp only).
    activation: Hidden activation name.
    condition_size: Width of the condition (a one-hot label; 0 for none).
    conv_channels: Channels of a `ConvStackEncoderNet` (conv only); empty:
      the classic `ConvEncoderNet`.

  Raises:
    ValueError: If `network` is not one of `NETWORKS`.
  """
  _check_network(network)
  if network == "mlp":
    return MLP(math.prod(image_shape) + condition_size,
               [*hidden_sizes, output_size], activation, name="mlp")
  height, width, channels = image_shape
  if conv_channels:
    return ConvStackEncoderNet((height, width, channels + condition_size),
                               output_size, conv_channels, activation,
                               name="conv")
  return ConvEncoderNet((height, width, channels + condition_size),
                        output_size, activation, name="conv")


def decoder_net(network, latent_size, output_shape, hidden_sizes=(512,),
                activation="tanh", conv_channels=()):
  """The network of a decoder: latent points to a map of output_shape.

  Maps z [B, latent_size] to [B, H * W * C'] ("mlp", to be reshaped) or
  [B, H, W, C'] ("conv"), (H, W, C') = `output_shape`. Named "mlp" or
  "conv" as `encoder_net`'s nets are.

  Args:
    network: One of `NETWORKS`.
    latent_size: Width of z.
    output_shape: (H, W, C') of the output map, C' the image's channels
      times the likelihood's parameters per pixel.
    hidden_sizes: Hidden widths (mlp only), from z upwards.
    activation: Hidden activation name.
    conv_channels: The encoder's channels of a `ConvStackDecoderNet` (conv
      only, in encoder order); empty: the classic `ConvDecoderNet`.

  Raises:
    ValueError: If `network` is not one of `NETWORKS`.
  """
  _check_network(network)
  if network == "mlp":
    return MLP(latent_size, [*hidden_sizes, math.prod(output_shape)],
               activation, name="mlp")
  if conv_channels:
    return ConvStackDecoderNet(latent_size, output_shape, output_shape[-1],
                               conv_channels, activation, name="conv")
  return ConvDecoderNet(latent_size, output_shape, output_shape[-1],
                        activation, name="conv")
