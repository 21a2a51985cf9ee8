"""The same VAEs as `tf_keras` Models trained with `fit`.

Written as the Keras VAE example writes them: `Sequential` encoder and
decoder, a `Model` subclass whose `train_step` computes the ELBO under a
`GradientTape`, `compile(optimizer=...)` and `fit` on NumPy arrays,
`predict` to decode. Keras' defaults are kept (no `jit_compile`, one step
per execution), as a user moving from Keras would run it.

The models are tfvae's exactly: MLP 784-512-2 tanh, or the conv VAE of the
classic Keras example (conv 32, 64/2, 64, 64, dense 32; dense, transposed
conv 32/2, conv), q(z | x) with softplus scales, Bernoulli p(x | z) by
logits, analytic KL.
"""
import tensorflow as tf
import tf_keras

layers = tf_keras.layers

# As in tfvae.models: keeps the posterior scale away from zero.
_MIN_POSTERIOR_SCALE = 1e-5


def mlp_networks(image_shape=(28, 28, 1), hidden_size=512, latent_size=2):
  """Returns (encoder, decoder) `Sequential`s of the MLP VAE."""
  pixels = image_shape[0] * image_shape[1] * image_shape[2]
  encoder = tf_keras.Sequential([
      layers.Input(image_shape),
      layers.Flatten(),
      layers.Dense(hidden_size, activation="tanh"),
      layers.Dense(2 * latent_size),
  ], name="encoder")
  decoder = tf_keras.Sequential([
      layers.Input((latent_size,)),
      layers.Dense(hidden_size, activation="tanh"),
      layers.Dense(pixels),
      layers.Reshape(image_shape),
  ], name="decoder")
  return encoder, decoder


def conv_networks(image_shape=(28, 28, 1), latent_size=2):
  """Returns (encoder, decoder) `Sequential`s of the conv VAE."""
  height, width, channels = image_shape
  encoder = tf_keras.Sequential([
      layers.Input(image_shape),
      layers.Conv2D(32, 3, padding="same", activation="relu"),
      layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
      layers.Conv2D(64, 3, padding="same", activation="relu"),
      layers.Conv2D(64, 3, padding="same", activation="relu"),
      layers.Flatten(),
      layers.Dense(32, activation="relu"),
      layers.Dense(2 * latent_size),
  ], name="encoder")
  decoder = tf_keras.Sequential([
      layers.Input((latent_size,)),
      layers.Dense((height // 2) * (width // 2) * 64, activation="relu"),
      layers.Reshape((height // 2, width // 2, 64)),
      layers.Conv2DTranspose(32, 3, strides=2, padding="same",
                             activation="relu"),
      layers.Conv2D(channels, 3, padding="same"),
  ], name="decoder")
  return encoder, decoder


class KerasVae(tf_keras.Model):
  """A VAE as a Keras Model with its own `train_step`.

  Args:
    encoder: Images [B, H, W, C] -> [B, 2 * latent_size] (loc, raw scale).
    decoder: z [B, latent_size] -> logits [B, H, W, C].
    latent_size: Width of z.
  """

  def __init__(self, encoder, decoder, latent_size, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.decoder = decoder
    self.latent_size = latent_size
    self.loss_tracker = tf_keras.metrics.Mean(name="loss")

  @property
  def metrics(self):
    return [self.loss_tracker]

  def negative_elbo(self, images, epsilon):
    """Mean -ELBO over images [B, H, W, C] with noise epsilon [B, latent]."""
    loc, raw_scale = tf.split(tf.cast(self.encoder(images), tf.float32), 2,
                              axis=-1)
    scale = tf.nn.softplus(raw_scale) + _MIN_POSTERIOR_SCALE
    z = loc + scale * epsilon
    logits = tf.cast(self.decoder(z), tf.float32)
    distortion = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits),
        axis=[1, 2, 3])
    rate = 0.5 * tf.reduce_sum(
        tf.square(loc) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale),
        axis=-1)
    return tf.reduce_mean(distortion + rate)

  def train_step(self, data):
    images = data
    epsilon = tf.random.normal([tf.shape(images)[0], self.latent_size])
    with tf.GradientTape() as tape:
      loss = self.negative_elbo(images, epsilon)
    grads = tape.gradient(loss, self.trainable_weights)
    self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
    self.loss_tracker.update_state(loss)
    return {"loss": self.loss_tracker.result()}

  def call(self, images):
    loc, _ = tf.split(self.encoder(images), 2, axis=-1)
    return tf.sigmoid(self.decoder(loc))


def build(network, image_shape=(28, 28, 1), latent_size=2, hidden_size=512,
          learning_rate=1e-3, optimizer="rmsprop", policy="float32"):
  """A compiled `KerasVae` ("mlp" or "conv") and its decoder's predictor.

  Args:
    policy: The Keras dtype policy its layers are built under
      ("mixed_bfloat16": Keras' own mixed precision; the loss is computed in
      float32 from the networks' outputs either way).

  Returns:
    (vae, generator): the trainable model and a `Model` z -> pixel means
    [N, H, W, C] for `predict`.
  """
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    if network == "mlp":
      encoder, decoder = mlp_networks(image_shape, hidden_size, latent_size)
    else:
      encoder, decoder = conv_networks(image_shape, latent_size)
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)
  vae = KerasVae(encoder, decoder, latent_size)
  opt = (tf_keras.optimizers.RMSprop(learning_rate) if optimizer == "rmsprop"
         else tf_keras.optimizers.Adam(learning_rate))
  vae.compile(optimizer=opt)
  z = layers.Input((latent_size,))
  generator = tf_keras.Model(z, layers.Activation("sigmoid")(decoder(z)))
  return vae, generator


def copy_weights_from_tfvae(vae, model):
  """Sets a `KerasVae`'s weights to a `tfvae.VAE`'s of the same network.

  Keras layers and tfvae modules hold their weights in the same layouts
  (dense [in, out], conv [k, k, in, out], transposed conv [k, k, out, in]),
  so the copy is one assignment per variable, in layer order.
  """
  for keras_net, tfvae_net in ((vae.encoder, model.encoder.net),
                               (vae.decoder, model.decoder.net)):
    targets = [w for layer in keras_net.layers for w in layer.weights]
    sources = _ordered_variables(tfvae_net)
    if [t.shape for t in targets] != [s.shape for s in sources]:
      raise ValueError(f"{keras_net.name}: Keras and tfvae weights differ in "
                       "shape")
    for target, source in zip(targets, sources):
      target.assign(source)


def _ordered_variables(net):
  """A tfvae net's variables in forward order: (w, b) of each layer."""
  if hasattr(net, "layers"):
    layers_in_order = net.layers
  elif hasattr(net, "convs"):
    layers_in_order = [*net.convs, net.dense, net.out]
  else:
    layers_in_order = [net.dense, net.upsample, net.out]
  return [v for layer in layers_in_order for v in (layer.w, layer.b)]
