"""A whole TF1 VAE as a tfvae run directory: `migrate_model`.

The graph is read (`anatomy`) into a native `models.VAE` of the same
architecture, the checkpoint's weights are copied in, and both are run on a
fixed batch of real test images with the same noise: the TF1 session (after
the graph has passed the op allow list) and the native model must agree to
`MAX_ABS_DIFF` on the posterior mean and scale, the decoded output and, where
the graph computes one, the per-example loss. Only then is the run directory
written (`run_dir.write_run_dir`), which `tfvae-train` resumes and every
other program reads as a native run.
"""
import dataclasses
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import errors
from tfvae import kinds
from tfvae import objectives
from tfvae.migrate import anatomy as anatomy_lib
from tfvae.migrate import graph
from tfvae.migrate import keras_h5
from tfvae.migrate import keras_optimizer
from tfvae.migrate import ops
from tfvae.migrate import reader
from tfvae.migrate import run_dir as run_dir_lib
from tfvae.migrate._messages import first_line

v1 = tf.compat.v1

# Largest |native - TF1| accepted on the posterior, the output and the loss.
MAX_ABS_DIFF = 1e-5
# The loss sums hundreds of per-pixel terms, each computed in float32 (and
# TF1 graphs often take log(1e-10 + p)): it is compared relative to its size.
MAX_REL_LOSS_DIFF = 1e-5
# Images verified on when the graph's batch is dynamic.
VERIFY_IMAGES = 32
# Seed of the verification noise eps.
_NOISE_SEED = 1414

# TF1 optimizer op types -> tfvae's optimizer of the same update.
_OPTIMIZERS = {"ApplyRMSProp": "rmsprop", "ResourceApplyRMSProp": "rmsprop",
               "ApplyAdam": "adam", "ResourceApplyAdam": "adam"}


@dataclasses.dataclass
class Migration:
  """What `migrate_model` found, checked and wrote.

  Attributes:
    run_dir: The run directory written.
    config: Its `config.Config`.
    step: The step its checkpoint holds.
    agreement: {quantity: max |native - TF1|} on the verification batch.
    lines: The report printed for the user.
  """
  run_dir: str
  config: config_lib.Config
  step: int
  agreement: dict
  lines: list


def _tf1_optimizer(meta):
  """(tfvae optimizer name or None, its learning rate or None, TF1 type,
  Adam's beta1 or None)."""
  for op in meta.graph.get_operations():
    name = _OPTIMIZERS.get(op.type)
    if name is None:
      continue
    lr_index = 2 if "RMSProp" in op.type else 5
    rate = anatomy_lib._constant(op.inputs[lr_index])  # pylint: disable=protected-access
    beta1 = None
    if name == "adam":
      beta1 = anatomy_lib._constant(op.inputs[6])  # pylint: disable=protected-access
    return (name, None if rate is None else float(rate), op.type,
            None if beta1 is None else float(beta1))
  kinds_seen = sorted({op.type for op in meta.graph.get_operations()
                       if op.type.startswith(("Apply", "ResourceApply"))})
  return None, None, kinds_seen[0] if kinds_seen else None, None


def tf1_optimizer_options(meta):
  """{config field: value} of the TF1 optimizer's hyper-parameters that
  tfvae's optimizers take: RMSProp's decay (rho) and either's epsilon."""
  for op in meta.graph.get_operations():
    name = _OPTIMIZERS.get(op.type)
    if name is None:
      continue
    # ApplyRMSProp(var, ms, mom, lr, rho, momentum, epsilon, grad);
    # ApplyAdam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2,
    # epsilon, grad).
    indices = ({"optimizer_rho": 4, "optimizer_epsilon": 6}
               if name == "rmsprop" else {"optimizer_epsilon": 8})
    found = {}
    for field, index in indices.items():
      value = anatomy_lib._constant(op.inputs[index])  # pylint: disable=protected-access
      if value is not None and np.size(value) == 1:
        found[field] = float(f"{float(value):.7g}")  # float32 digits
    return found
  return {}


def _uniform(names):
  return names[0] if names and len(set(names)) == 1 else None


def config_for(anatomy, dataset, data_dir, optimizer, learning_rate,
               batch_size, data_fields=None):
  """The `config.Config` of the native VAE an `Anatomy` describes, training
  on `dataset` or on the images `data_fields` names (`run_dir.DATA_FIELDS`)."""
  encoder = [d.activation for d in anatomy.encoder]
  decoder = [d.activation for d in anatomy.decoder[:-1]]
  hidden = tuple(d.units for d in anatomy.encoder)
  decoder_hidden = tuple(d.units for d in anatomy.decoder[:-1])
  activation = _uniform(encoder + decoder) or (encoder or decoder or
                                               ["tanh"])[0]
  fields = dict(
      dataset=dataset, data_dir=data_dir, model="vae",
      network="conv" if anatomy.encoder_conv else "mlp",
      latent_dim=anatomy.latent_size, hidden_sizes=hidden,
      likelihood=anatomy.likelihood, activation=activation,
      optimizer=optimizer or "adam", image_shape=tuple(anatomy.image_shape),
      posterior_scale=anatomy.posterior_scale,
      posterior_scale_floor=anatomy.scale_floor)
  if learning_rate:
    fields["learning_rate"] = learning_rate
  if batch_size:
    fields["batch_size"] = batch_size
  if anatomy.decoder_conv is not None:
    fields["decoder_conv_channels"] = tuple(anatomy.decoder_conv[:2])
    encoder_only = _uniform(encoder)
    fields["activation"] = activation = encoder_only or encoder[0]
    decoder = decoder[:1]
  elif decoder_hidden != tuple(reversed(hidden)):
    fields["decoder_hidden_sizes"] = decoder_hidden
  if _uniform(encoder) != activation:
    fields["encoder_activations"] = ",".join(encoder)
  if _uniform(decoder) != activation:
    fields["decoder_activations"] = ",".join(decoder)
  if anatomy.encoder_conv:
    fields["hidden_sizes"] = config_lib.Config().hidden_sizes
    fields.pop("encoder_activations", None)
  if anatomy.encoder_conv_layers:
    fields.update(network="conv", hidden_sizes=(1,),
                  encoder_conv_layers=anatomy.encoder_conv_layers)
    fields.pop("encoder_activations", None)
    fields["activation"] = activation = _uniform(decoder) or (
        decoder[0] if decoder else "relu")
    if anatomy.decoder_conv_layers is None:
      fields["decoder_hidden_sizes"] = decoder_hidden
    hidden = (1,)
  if anatomy.decoder_conv_layers:
    fields["decoder_conv_layers"] = anatomy.decoder_conv_layers
    for name in ("decoder_hidden_sizes", "decoder_activations"):
      fields.pop(name, None)
  if anatomy.encoder_conv_layers and anatomy.decoder_conv_layers:
    fields["activation"] = encoder[0]
  if not hidden:
    raise anatomy_lib.UnsupportedGraphError(
        "the encoder has no hidden layer; native MLPs have at least one")
  config = config_lib.Config(**fields, **(data_fields or {}))
  config.validate()
  return config


def load_weights(model, anatomy, values):
  """Copies the checkpoint arrays `values` into the native VAE.

  The encoder's two heads (mean and raw scale) become its last layer's two
  halves, [hidden, 2 * latent]. A decoder's mean and log-variance heads
  (`Anatomy.log_variance_head`), each [hidden, H * W * C], become its output
  layer [hidden, H * W * 2C]: per pixel the C mean channels, then the C
  log-variance channels, as `likelihoods.GaussianLogVariance` splits them.

  Returns:
    {native variable path: [checkpoint names]}, for the report.
  """
  def array(name, shape):
    if name is None:
      return np.zeros(shape, np.float32)
    return np.asarray(values[name], np.float32)

  used = {}
  net = model.encoder.net
  enc_layers = ([*net.convs, net.dense, net.out] if anatomy.encoder_conv
                else [*net.convs, *net.denses, net.out]
                if anatomy.encoder_conv_layers
                else net.layers)
  heads = [anatomy.loc_head] + ([anatomy.scale_head] if anatomy.scale_head
                                else [])
  for layer, dense in zip(enc_layers[:-1], anatomy.encoder):
    layer.w.assign(array(dense.weight, None))
    layer.b.assign(array(dense.bias, layer.b.shape))
    used[layer.w.name] = [dense.weight]
    used[layer.b.name] = [dense.bias]
  last = enc_layers[-1]
  half = [h.units for h in heads]
  last.w.assign(np.concatenate([array(h.weight, None) for h in heads], 1))
  last.b.assign(np.concatenate(
      [array(h.bias, (n,)) for h, n in zip(heads, half)]))
  used[last.w.name] = [h.weight for h in heads]
  used[last.b.name] = [h.bias for h in heads]
  net = model.decoder.net
  decoder_layers = ([net.dense, net.upsample, net.out]
                    if anatomy.decoder_conv is not None else
                    [net.dense, *net.upsamples, net.out]
                    if anatomy.decoder_conv_layers else net.layers)
  for layer, dense in zip(decoder_layers, anatomy.decoder):
    if dense is anatomy.decoder[-1] and anatomy.log_variance_head:
      _load_two_heads(layer, dense, anatomy, array, used)
      continue
    layer.w.assign(array(dense.weight, None))
    layer.b.assign(array(dense.bias, layer.b.shape))
    used[layer.w.name] = [dense.weight]
    used[layer.b.name] = [dense.bias]
  return used


def _load_two_heads(layer, mean_head, anatomy, array, used):
  """Interleaves the mean and log-variance heads into `layer` per pixel."""
  variance_head = anatomy.log_variance_head
  channels = anatomy.image_shape[-1]
  pixels = mean_head.units // channels
  weights = [array(d.weight, None) for d in (mean_head, variance_head)]
  hidden = weights[0].shape[0]
  layer.w.assign(np.concatenate(
      [w.reshape(hidden, pixels, channels) for w in weights],
      -1).reshape(hidden, -1))
  biases = [array(d.bias, (mean_head.units,))
            for d in (mean_head, variance_head)]
  layer.b.assign(np.concatenate(
      [b.reshape(pixels, channels) for b in biases], -1).reshape(-1))
  used[layer.w.name] = [mean_head.weight, variance_head.weight]
  used[layer.b.name] = [mean_head.bias, variance_head.bias]


def _feed_shape(tensor, batch, event):
  """The shape to feed `tensor`: [batch, *event] after any leading 1s (the
  sample dimension of `tf.distributions`' draws), or [batch, -1]."""
  if tensor.shape.rank is None:
    return [batch, -1]
  rank = tensor.shape.rank
  if rank == 2:
    return [batch, -1]
  lead = rank - 1 - len(event)
  return [1] * lead + [batch, *event]


def tf1_reference(meta, prefix, anatomy, images, noise):
  """Runs the TF1 graph on `images` with eps = `noise`.

  Args:
    meta: The `graph.MetaGraph`.
    prefix: The checkpoint prefix.
    anatomy: Its `Anatomy`.
    images: float32 [N, H, W, C] in [0, 1].
    noise: float32 [N, latent].

  Returns:
    [values of `anatomy.fetches()`].

  Raises:
    errors.TfvaeError: If the session cannot restore or run.
  """
  fetches = anatomy.fetches()
  names = [op.name for op in meta.ancestors(fetches)
           if op.type in ("VariableV2", "Variable", "VarHandleOp")]
  batch = len(images)
  x_shape = _feed_shape(anatomy.input, batch, images.shape[1:])
  eps_shape = _feed_shape(anatomy.noise, batch, noise.shape[1:])
  feeds = {anatomy.input.name: images.reshape(x_shape),
           anatomy.noise.name: noise.reshape(eps_shape)}
  feeds.update({t.name: images.reshape(_feed_shape(t, batch, images.shape[1:]))
                for t in anatomy.targets})
  feeds.update({t.name: v for t, v in anatomy.feeds.items()})
  with tf.Graph().as_default() as g:
    v1.train.import_meta_graph(meta.meta_graph_def, clear_devices=True)
    var_list = {}
    for name in names:
      op = g.get_operation_by_name(name)
      found = [v for v in g.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
               if v.op is op]
      var_list[name] = found[0] if found else op.outputs[0]
    with v1.Session(graph=g) as sess:
      try:
        v1.train.Saver(var_list=var_list).restore(sess, prefix)
        values = sess.run([t.name for t in fetches], feeds)
      except (tf.errors.OpError, ValueError) as e:
        raise errors.TfvaeError(
            f"the TF1 graph {meta.path} failed to run with checkpoint "
            f"{prefix}: {first_line(e)}") from e
  if anatomy.per_example_loss is not None and anatomy.loss_sign != 1.0:
    values[-1] = anatomy.loss_sign * np.asarray(values[-1])
  if anatomy.output_logits:
    # The graph decodes to logits (fetches()[2]); the native output is the
    # mean, sigmoid(logits), computed here in float64.
    values[2] = 1.0 / (1.0 + np.exp(-np.asarray(values[2], np.float64)))
  return values


def native_values(model, images, noise, with_loss, with_scale=False):
  """The native model's [loc, scale, output mean, (decoded scale),
  (per-example loss)]."""
  x = tf.constant(images)
  posterior = model.approx_posterior(x)
  z = objectives.reparameterize(posterior, tf.constant(noise))
  outputs = model.decoder.outputs(z)
  values = [posterior.loc.numpy(), posterior.scale.diag_part().numpy(),
            outputs["mean"].numpy()]
  if with_scale:
    values.append(outputs["scale"].numpy())
  if with_loss:
    values.append(-objectives.elbo(model, x, noise=noise).elbo.numpy())
  return values


def compare(names_and_tensors, expected, got, batch):
  """{quantity: max abs diff}; raises naming the first tensor that differs.

  Args:
    names_and_tensors: [(quantity, TF1 tensor name)].
    expected: TF1 values.
    got: Native values.
    batch: Examples compared.

  Raises:
    errors.TfvaeError: Naming the quantity and TF1 tensor.
  """
  found = {}
  for (what, name), tf1, native in zip(names_and_tensors, expected, got):
    tf1 = np.asarray(tf1, np.float64)
    native = np.asarray(native, np.float64)
    if tf1.size == batch * (native.size // batch):
      tf1 = tf1.reshape(native.shape) if tf1.size == native.size else tf1
    if what == "loss (batch mean)":
      native = np.mean(native)
    if tf1.shape != native.shape:
      raise errors.TfvaeError(
          f"{what}: TF1 tensor {name} has shape {list(tf1.shape)}, the native "
          f"model gives {list(native.shape)}; not writing anything")
    if "loss" in what:
      # TF1 losses such as log(1e-10 + 1 - p) are infinite where p rounds
      # to 1; those examples have no finite loss to compare with.
      finite = np.isfinite(tf1)
      if not np.all(finite):
        logging.warning("The TF1 loss %s is not finite for %d of %d "
                        "examples; compared on the others", name,
                        np.size(tf1) - np.count_nonzero(finite), np.size(tf1))
        if not np.any(finite):
          continue
        tf1, native = tf1[finite], native[finite]
    diff = float(np.max(np.abs(tf1 - native)))
    limit = MAX_ABS_DIFF
    if "loss" in what:
      limit = max(MAX_ABS_DIFF,
                  MAX_REL_LOSS_DIFF * float(np.max(np.abs(tf1))))
    if not diff <= limit:
      raise errors.TfvaeError(
          f"the native model disagrees with the TF1 graph on {what} "
          f"(tensor {name}): max |native - TF1| = {diff:.3g} > {limit:.3g} "
          "on the verification batch; not writing anything")
    found[what] = diff
  return found


def fit_gaussian(model, images, noise, tf1_loss):
  """Reads a Gaussian decoder's scale off the TF1 per-example loss.

  A squared-error loss a * sum((x - mean)^2) + b + KL is -log N(x | mean,
  s^2) with s^2 = 1 / (2 a), less N/2 log(2 pi s^2) - b; a and b are fitted
  by least squares over the batch (verification then checks the fit).

  Returns:
    (s, offset): the scale, and what to add to the TF1 loss to get the
    native one.

  Raises:
    errors.TfvaeError: If the loss does not grow with the squared error.
  """
  x = tf.constant(images)
  posterior = model.approx_posterior(x)
  z = objectives.reparameterize(posterior, tf.constant(noise))
  mean = model.decoder.outputs(z)["mean"].numpy().reshape(len(images), -1)
  rate = objectives.rate(posterior, model.prior(), z).numpy()
  squared = np.sum((images.reshape(len(images), -1) - mean) ** 2, axis=1)
  design = np.stack([squared, np.ones_like(squared)], axis=1)
  (a, b), *_ = np.linalg.lstsq(design, np.asarray(tf1_loss, np.float64)
                               - rate, rcond=None)
  if not a > 0:
    raise errors.TfvaeError(
        "the TF1 loss of the Gaussian decoder does not grow with the squared "
        "error; not a Gaussian likelihood tfvae has")
  scale = math.sqrt(1.0 / (2.0 * a))
  pixels = mean.shape[1]
  return scale, pixels * 0.5 * math.log(2 * math.pi * scale ** 2) - b


def verification_batch(config, batch, exact=False):
  """The first `batch` (`exact`: exactly) test images [N, H, W, C] in [0, 1]
  (float32) of the data `config` trains on, and that `data.Dataset`."""
  return run_dir_lib.verification_batch(config, batch, exact)


def migrate_model(checkpoint, run_dir, *, meta_graph=None,
                  dataset="fashion_mnist", data_dir=None, data_fields=None,
                  allow_unsafe_ops=False, with_optimizer_state=False,
                  verify_images=VERIFY_IMAGES, keras_config=None,
                  posterior_scale=None, decoder=None):
  """Migrates a TF1 or Keras 2 VAE into a tfvae run directory.

  Args:
    checkpoint: A TF1 checkpoint prefix or its directory, or a Keras 2
      HDF5 file (`model.save` or `model.save_weights`; see `keras_h5`).
    run_dir: The run directory to write; must not exist (or be empty).
    meta_graph: The `.meta`; default the one beside the prefix.
    dataset: Data set whose test images verify (and the run trains on).
    data_dir: Where to look for it first.
    data_fields: Instead of `dataset`, the user's images: {field: value}
      of `run_dir.DATA_FIELDS` (--data, ...), recorded as tfvae-train does.
    allow_unsafe_ops: Run a graph whose ops are outside the allow list.
    with_optimizer_state: Carry the optimizer's slots over (RMSProp, Adam).
    verify_images: Images verified on (a static batch overrides it).
    keras_config: For a Keras weights-only file, the model.to_json() file.
    posterior_scale: For a Keras file, the sampling Lambda's
      parametrisation; None: from the add_loss KL term or layer names.
    decoder: For a Keras encoder saved apart (`checkpoint`), its decoder.

  Returns:
    A `Migration`.

  Raises:
    errors.TfvaeError: For any problem; nothing is written then.
  """
  run_dir_lib.check_target(run_dir)
  if keras_h5.is_keras(checkpoint, decoder):
    return _migrate_keras(checkpoint, run_dir, dataset, data_dir,
                          verify_images, keras_config, posterior_scale,
                          decoder, with_optimizer_state, data_fields)
  if keras_config or posterior_scale or decoder:
    raise errors.TfvaeError(
        "--keras_config, --posterior_scale and --decoder apply to Keras "
        "HDF5 files, not "
        f"to {checkpoint}")
  source = reader.resolve(checkpoint)
  if source.kind != reader.SOURCE_TF1_PREFIX:
    raise errors.TfvaeError(
        f"{checkpoint} is not a TF1 checkpoint (it is {source.kind}); a "
        "tfvae run needs no migration")
  meta_path = meta_graph or source.meta_graph
  if not meta_path:
    raise errors.TfvaeError(
        f"checkpoint {source.prefix} has no .meta beside it (pass "
        "--meta_graph); without the graph the encoder cannot be read, but "
        "tfvae-build-generator --no_meta maps the decoder alone")
  report = reader.verify(source)
  meta = graph.MetaGraph(meta_path)
  anatomy = anatomy_lib.read_anatomy(meta)
  lines = anatomy.describe()
  to_run = meta.ancestors(anatomy.fetches())
  ops.refuse_unless_allowed(
      meta.disallowed_ops(to_run), allow_unsafe_ops,
      f"meta graph {meta.path} runs ops outside the allow list in the model "
      "or its loss", "refusing to run any of it",
      "Running ops outside the allow list")
  optimizer, learning_rate, tf1_type, beta1 = _tf1_optimizer(meta)
  if optimizer is None and tf1_type:
    lines.append(f"Optimizer: {tf1_type} has no tfvae counterpart; the run "
                 "trains with adam")
  # eps is [B, latent], or [1, B, latent] from tf.distributions' sample().
  static = anatomy.noise.shape.as_list()[-2] if anatomy.noise.shape.rank else (
      None)
  batch = static or verify_images
  config = config_for(anatomy, dataset, data_dir, optimizer, learning_rate,
                      static, data_fields).replace(
                          **tf1_optimizer_options(meta))
  config.validate()
  model = kinds.build_model(config)
  values = reader.read_all(source, anatomy.variables())
  for name, value in sorted(values.items()):
    if not np.all(np.isfinite(value)):
      raise errors.TfvaeError(
          f"variable {name} of checkpoint {source.prefix} holds NaN or "
          "infinite values (training diverged); nothing to migrate")
  used = load_weights(model, anatomy, values)
  images, loaded = verification_batch(config, batch, exact=bool(static))
  batch = len(images)
  noise = np.random.RandomState(_NOISE_SEED).normal(
      size=(batch, config.latent_dim)).astype(np.float32)
  expected = tf1_reference(meta, source.prefix, anatomy, images, noise)
  with_loss = anatomy.loss is not None
  if anatomy.likelihood == "gaussian_identity":
    if anatomy.per_example_loss is None:
      raise errors.TfvaeError(
          f"meta graph {meta.path} has an unsquashed (Gaussian) decoder "
          f"output {anatomy.output.name} but no per-example loss to read "
          "its scale from; only the decoder can be migrated: "
          "tfvae-build-generator")
    scale, offset = fit_gaussian(model, images, noise, expected[3])
    config = config.replace(gaussian_scale=scale)
    model = kinds.build_model(config)
    used = load_weights(model, anatomy, values)
    expected[3] = expected[3] + offset
    lines.append(f"Gaussian likelihood: the graph's loss is -log N(x | "
                 f"mean, {scale:.6g}^2) less {offset:.6g} nats")
  with_scale = anatomy.log_variance is not None
  if with_scale:
    expected[3] = np.exp(0.5 * np.asarray(expected[3], np.float64))
    lines.append(f"Gaussian likelihood: per-pixel scale exp(v / 2) of the "
                 f"log-variance head {anatomy.log_variance.name}")
  got = native_values(model, images, noise, with_loss, with_scale)
  quantities = [("posterior mean", anatomy.loc.name),
                ("posterior scale", anatomy.scale.name),
                ("decoded output", anatomy.output.name)]
  if with_scale:
    quantities.append(("decoded scale",
                       f"exp(0.5 * {anatomy.log_variance.name})"))
  if anatomy.per_example_loss is not None:
    quantities.append(("per-example loss", anatomy.per_example_loss.name))
  elif with_loss:
    quantities.append(("loss (batch mean)", anatomy.loss.name))
  agreement = compare(quantities, expected, got, batch)
  for what, diff in agreement.items():
    lines.append(f"Verified {what}: max |native - TF1| = {diff:.3g} on "
                 f"{batch} test images")
  step = report.step or 0
  slots = {}
  if with_optimizer_state:
    slots = run_dir_lib.tf1_slots(report, source, optimizer, used,
                                  beta1 or 0.9)
  provenance = {
      "source": "TF1 checkpoint and graph", "checkpoint":
      os.path.abspath(source.prefix), "meta_graph": os.path.abspath(meta_path),
      "step": step, "tf1_optimizer": tf1_type,
      "optimizer_state": bool(slots), "verification": {
          "images": batch, "max_abs_diff": agreement},
      "weights": used, "anatomy": lines[:5]}
  steps_per_epoch = max(len(loaded.train.labels) // config.batch_size, 1)
  run_dir_lib.write_run_dir(run_dir, config, model, step, provenance,
                            slots=slots, steps_per_epoch=steps_per_epoch)
  lines.append(f"Wrote {run_dir} at step {step}"
               + (" with the optimizer's state" if slots else ""))
  return Migration(run_dir, config, step, agreement, lines)



def _migrate_keras(path, run_dir, dataset, data_dir, verify_images,
                   keras_config, posterior_scale, decoder=None,
                   with_optimizer_state=False, data_fields=None):
  """`migrate_model` for a Keras 2 file or SavedModel, checked against
  numpy."""
  keras = keras_h5.read_keras(path, keras_config, posterior_scale, decoder)
  anatomy, arrays = keras.anatomy, keras.arrays
  lines = keras_h5.describe(anatomy, " + ".join(dict.fromkeys(
      keras.files))) + keras.notes
  optimizer = None
  if keras_h5.is_hdf5(keras.files[0]):
    optimizer = keras_optimizer.read_optimizer(keras.files[0], set(arrays))
  fields, optimizer_lines = keras_optimizer.config_fields(optimizer)
  lines += optimizer_lines
  config = config_for(anatomy, dataset, data_dir,
                      fields.get("optimizer", "adam"),
                      fields.get("learning_rate"), None, data_fields)
  options = {k: v for k, v in fields.items()
             if k in ("optimizer_rho", "optimizer_epsilon")}
  if options:
    config = config.replace(**options)
    config.validate()
  if keras.gaussian_scale:
    config = config.replace(gaussian_scale=keras.gaussian_scale)
  model = kinds.build_model(config)
  used = load_weights(model, anatomy, arrays)
  slots = {}
  if with_optimizer_state:
    if optimizer is None:
      raise errors.TfvaeError(
          f"--with_optimizer_state: {keras.files[0]} holds no optimizer "
          "state read here (only the optimizer_weights of model.save's "
          "HDF5 file are; drop the flag)")
    slots = keras_optimizer.slots_for(optimizer, used, keras.derived)
  images, loaded = verification_batch(config, verify_images)
  noise = np.random.RandomState(_NOISE_SEED).normal(
      size=(len(images), config.latent_dim)).astype(np.float32)
  expected = keras_h5.reference_values(anatomy, arrays, images, noise)
  got = native_values(model, images, noise, with_loss=False)
  agreement = compare([("posterior mean", "numpy mean"),
                       ("posterior scale", "numpy scale"),
                       ("decoded output", "numpy output")], expected, got,
                      len(images))
  for what, diff in agreement.items():
    lines.append(f"Verified {what}: max |native - numpy| = {diff:.3g} on "
                 f"{len(images)} test images")
  step = keras.step or 0
  provenance = {
      "source": "Keras 2 model", "file": os.path.abspath(keras.files[0]),
      "decoder_file": (os.path.abspath(keras.files[1])
                       if len(keras.files) > 1 else None),
      "keras_config": keras_config and os.path.abspath(keras_config),
      "step": step, "posterior_scale": anatomy.posterior_scale,
      "optimizer_state": bool(slots),
      "keras_optimizer": optimizer and {"class": optimizer.keras_class,
                                        "config": optimizer.hyper},
      "derived_weights": keras.derived,
      "verification": {"images": len(images), "max_abs_diff": agreement,
                       "reference": "numpy, float64"},
      "weights": used, "anatomy": lines[:4] + keras.notes}
  steps_per_epoch = max(len(loaded.train.labels) // config.batch_size, 1)
  run_dir_lib.write_run_dir(run_dir, config, model, step, provenance,
                            slots=slots, steps_per_epoch=steps_per_epoch)
  lines.append(f"Wrote {run_dir} at step {step}"
               + (" with the optimizer's state" if slots else ""))
  return Migration(run_dir, config, step, agreement, lines)
