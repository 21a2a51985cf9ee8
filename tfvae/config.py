"""The configuration of a training run, saved as JSON in its run directory.

Later programs (export, evaluate, plot) rebuild the model from the run
directory alone, so every field that defines the model or its data is here.

Each field is stated once, in `Config`: its default, its help text (which
`tfvae-train --help` shows), its choices and the check `Config.validate`
applies. `tools/train.py` derives its flags from `fields()`.

Importing this module does not import TensorFlow: the few checks that need
the code that uses a value (the likelihood, the activation, the KL schedule,
the corruption) import it when `validate` runs.
"""
import dataclasses
import json
import math
import numbers
import typing
from typing import Any, Callable

from tfvae import data
from tfvae import errors
from tfvae import files
from tfvae import kinds

DATASETS = data.DATASET_NAMES
NETWORKS = ("mlp", "conv")
BINARIZATIONS = ("none", "static", "dynamic")
OPTIMIZERS = ("adam", "rmsprop")
STRATEGIES = ("default", "mirrored", "multi_worker")
SPARSITY_PENALTIES = ("kl", "l1")
POSTERIOR_SCALES = ("softplus", "log_variance", "log_scale")
# tfvae/precision.py's PRECISIONS (config.py imports no TensorFlow).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# The key of a field's `_Spec` in its `dataclasses.Field.metadata`.
_SPEC = "tfvae"


@dataclasses.dataclass(frozen=True)
class Check:
  """A condition on one field's value, and what to tell the user if unmet.

  Attributes:
    ok: value -> bool.
    why: The reason shown after "--FLAG=VALUE: " (or a function giving
      it, for choices known only at check time).
  """
  ok: Callable[[Any], bool]
  why: str | Callable[[], str]


_POSITIVE = Check(lambda value: value > 0, "must be positive")
_NOT_NEGATIVE = Check(lambda value: value >= 0, "must not be negative")
_POSITIVE_WIDTHS = Check(lambda widths: all(w > 0 for w in widths),
                         "widths must be positive")
_OPEN_UNIT_INTERVAL = Check(lambda value: 0 < value < 1, "must be in (0, 1)")
# Every int field is stored and used as an int64 (seeds, step counts).
_INT64 = Check(lambda value: -2**63 <= value < 2**63,
               "must fit in a signed 64-bit integer")
# Every float field: JSON has no inf or NaN, and no rate or weight is one.
_FINITE = Check(math.isfinite, "must be finite")


class FieldTypeError(errors.TfvaeError, TypeError):
  """A `Config` field was given a value of the wrong type.

  Also a TypeError, so that code reading configs it only informs itself with
  (an export's provenance) can ignore a bad one as before.
  """


def _type_name(kind, length):
  """What a value of field type `kind` is called in errors."""
  if kind is tuple:
    return f"a list of {length} integers" if length else "a list of integers"
  return {str: "a string", int: "an integer", float: "a number",
          bool: "true or false"}[kind]


def _has_type(value, kind, length):
  """Whether `value` (from JSON or Python) is of field type `kind`."""
  if isinstance(value, bool):
    return kind is bool
  if kind is int:
    return isinstance(value, numbers.Integral)
  if kind is float:
    return isinstance(value, numbers.Real)
  if kind is tuple:
    return (isinstance(value, (list, tuple))
            and (length is None or len(value) == length)
            and all(isinstance(v, numbers.Integral)
                    and not isinstance(v, bool) for v in value))
  return isinstance(value, kind)


def _as_json(value):
  """`value` as config.json spells it, for error messages."""
  try:
    return json.dumps(value)
  except (TypeError, ValueError):
    return repr(value)


def _one_of(choices, why=None):
  """A Check that a value is one of `choices`: a tuple, or a function
  returning one, asked at check time (model kinds can be registered after
  this module is imported)."""
  current = choices if callable(choices) else lambda: choices
  return Check(lambda value: value in current(),
               why or (lambda: f"choose one of {', '.join(current())}"))


# Checks that parse a value with the code that uses it. They run after every
# `Check`, in field order, and import that code only then because it imports
# TensorFlow, which `import tfvae.config` must not. Those modules never import
# this one, so the deferred imports point one way.


def _parse_likelihood(config):
  from tfvae import likelihoods  # pylint: disable=g-import-not-at-top
  try:
    likelihoods.get(config.likelihood)
  except ValueError as e:
    raise errors.TfvaeError(f"--likelihood: {e}") from None


def _parse_activation(config):
  from tfvae import nets  # pylint: disable=g-import-not-at-top
  try:
    nets.get_activation(config.hidden_activation)
  except ValueError as e:
    raise errors.TfvaeError(f"--activation: {e}") from None


def _parse_layer_activations(config):
  from tfvae import nets  # pylint: disable=g-import-not-at-top
  decoder_sizes = config.decoder_hidden_sizes
  if decoder_sizes is None:
    decoder_sizes = config.hidden_sizes
  if config.decoder_conv_channels is not None:
    decoder_sizes = (None,)
  for name, sizes in (("encoder_activations", config.hidden_sizes),
                      ("decoder_activations", decoder_sizes)):
    text = getattr(config, name)
    if text is None:
      continue
    names = text.split(",")
    if len(names) != len(sizes):
      raise errors.TfvaeError(
          f"--{name}={text}: {len(names)} activations for {len(sizes)} "
          "hidden layers")
    for activation in names:
      try:
        nets.get_activation(activation)
      except ValueError as e:
        raise errors.TfvaeError(f"--{name}: {e}") from None


def _parse_conv_layers(config, name):
  from tfvae import nets  # pylint: disable=g-import-not-at-top
  text = getattr(config, name)
  if text is None:
    return
  try:
    nets.parse_conv_layers(text)
  except ValueError as e:
    raise errors.TfvaeError(f"{name}: {e}") from None


def _parse_kl_schedule(config):
  from tfvae import objectives  # pylint: disable=g-import-not-at-top
  objectives.KlSchedule.parse(config.kl_schedule)


def _parse_noise(config):
  from tfvae import autoencoders  # pylint: disable=g-import-not-at-top
  autoencoders.Corruption.parse(config.noise)


@dataclasses.dataclass(frozen=True)
class _Spec:
  help: str
  choices: tuple = ()
  check: Check | None = None
  parse: Callable | None = None
  resumable: bool = False
  on_command_line: bool = True
  length: int | None = None


def _field(default, help_text, *, choices=(), check=None, parse=None,
           resumable=False, on_command_line=True, length=None):
  """A `Config` field with its help, choices and checks beside its default.

  Args:
    default: The default value.
    help_text: What the field means, as `--help` shows it.
    choices: The values the flag accepts (an enum flag); empty: any.
    check: A `Check` that `Config.validate` applies to the value.
    parse: A function of the config that raises `errors.TfvaeError` if the
      value cannot be used; runs after every field's `check`.
    resumable: Whether the value may differ when a run is resumed: it changes
      how the run is executed or how long it goes on, not what is trained.
    on_command_line: Whether `tfvae-train` has a flag for it.
    length: For a tuple field, the number of entries it must have.

  The field's type is its annotation in `Config` (str, int, float, bool or
  tuple of ints, optionally `| None`); `Config` refuses a value of another
  type when it is built (`FieldTypeError`), before `validate` runs.
  """
  spec = _Spec(help_text, tuple(choices), check, parse, resumable,
               on_command_line, length)
  return dataclasses.field(default=default, metadata={_SPEC: spec})


@dataclasses.dataclass
class Config:
  """Everything that defines a training run.

  Each field's meaning is its help text, below (also `tfvae-train --help`).
  Fields are declared in the order `validate` checks them, so that a config
  with several bad values names the same one first as earlier versions did.
  """
  dataset: str = _field(
      "fashion_mnist", "Data set to train on.",
      choices=DATASETS, check=_one_of(DATASETS))
  data_dir: str | None = _field(
      None, "Directory searched first for the data set's IDX files or "
      "mnist.npz (then $TFVAE_DATA_DIR, ~/.keras/datasets, "
      "/usr/share/datasets/fashion-mnist).", resumable=True)
  # The user's own images (issue 15, tfvae/image_sources.py).
  data: str | None = _field(
      None, "Train on your own images instead of --dataset: a directory of "
      "PNG/JPEG/BMP/GIF images (one subdirectory per class, or flat for no "
      "labels), a list file of 'path [label]' lines (paths relative to it), "
      "an .npz ('images', optional 'labels') or .npy array [N, H, W, C] "
      "(uint8 or float in [0, 1]), or TFRecord shards PREFIX-*-of-* "
      "(tfvae-make-tfrecords).", resumable=True)
  test_data: str | None = _field(
      None, "With --data: the test split's images, in any --data form; "
      "default: --test_fraction of --data held out.", resumable=True)
  test_fraction: float = _field(
      0.1, "With --data and no --test_data: the share of the images held "
      "out as the test split, chosen by a fixed seed (the same for every "
      "run on the same data).", check=_OPEN_UNIT_INTERVAL)
  image_size: tuple = _field(
      (), "With --data: H,W every image is brought to (scaled to cover it, "
      "keeping the aspect ratio, then centre-cropped); default: the "
      "images' own size, which must then be the same for all.",
      check=Check(lambda size: len(size) in (0, 2) and all(s > 0 for s in
                                                           size),
                  "expected H,W: two positive integers"))
  channels: int = _field(
      0, "With --data: 1 (grey) or 3 (colour) channels; 0: the data's (3 if "
      "any image is colour).",
      check=Check(lambda c: c in (0, 1, 3), "choose 0, 1 or 3"))
  skip_bad_images: bool = _field(
      False, "With --data: leave out images that cannot be read or decoded "
      "(counted in the log) instead of stopping with an error naming the "
      "first.")
  cache_mb: int = _field(
      1024, "With --data: MiB of decoded training images held in memory; a "
      "larger training set is streamed from disk each epoch (parallel "
      "decoding, bounded memory; TFRecords then come in a seeded shuffle of "
      "their shards, not the cached order).", check=_POSITIVE)
  conv_channels: tuple = _field(
      (), "With --network=conv: channels of the encoder's stride-2 3x3 "
      "convolutions, e.g. 32,64,128 (the decoder mirrors them with "
      "transposed convolutions back to exactly H x W); default: the classic "
      "net (conv 32, 64/2, 64, 64).", check=_POSITIVE_WIDTHS)
  model: str = _field(
      "vae", "Kind of model: " + ", ".join(
          f"{name} ({kinds.get(name).description})" for name in kinds.names())
      + ". Autoencoders cannot generate; for them --latent_dim is the code "
      "width.", choices=kinds.names(), check=_one_of(kinds.names))
  network: str = _field(
      "mlp", "Encoder/decoder architecture: mlp (784-512-latent by default) "
      "or conv (conv 32, 64/2, 64, 64, dense 32; transposed conv decoder).",
      choices=NETWORKS, check=_one_of(NETWORKS, "choose mlp or conv"))
  latent_dim: int = _field(2, "Dimension of the latent code z.",
                           check=_POSITIVE)
  hidden_sizes: tuple = _field(
      (512,), "Comma-separated hidden widths of the MLP encoder; the decoder "
      "mirrors them.", check=_POSITIVE_WIDTHS)
  likelihood: str = _field(
      "bernoulli", "Decoder distribution p(x|z): bernoulli (logits), "
      "continuous_bernoulli (grey-level), gaussian (fixed scale, see "
      "--gaussian_scale), gaussian_learned (per-pixel scale), "
      "gaussian_identity (fixed scale, the decoder's output unsquashed as "
      "the mean; what tfvae-migrate makes of identity-output decoders), "
      "gaussian_log_variance (the decoder predicts a per-pixel "
      "log-variance v beside the mean: sigmoid mean, scale exp(v / 2), v "
      "clipped to "
      "[-15, 15]; what tfvae-migrate makes of TF1 two-head Gaussian "
      "decoders), gaussian_log_variance_identity (the same, mean "
      "unsquashed).",
      choices=kinds.likelihood_names(), parse=_parse_likelihood)
  activation: str | None = _field(
      None, "Hidden activation (tanh, relu, elu, selu, sigmoid, softplus, "
      "leaky_relu, gelu, swish); default tanh for mlp, relu for conv.",
      parse=_parse_activation)
  binarize: str = _field(
      "none", "Binarisation of pixels: none (grey levels in [0,1]), static "
      "(sampled once, fixed seed) or dynamic (resampled every batch). The "
      "test split of a binarised run is binarised once with a fixed seed.",
      choices=BINARIZATIONS, check=_one_of(BINARIZATIONS))
  seed: int = _field(
      0, "Seed of initialisation, data order and sampling; the same flags "
      "and seed give the same loss curve.")
  batch_size: int = _field(
      64, "Global batch size (split across replicas).", check=_POSITIVE)
  epochs: int = _field(
      10, "Total epochs to train; raise it to extend a finished run.",
      check=_NOT_NEGATIVE, resumable=True)
  learning_rate: float = _field(1e-3, "Optimizer learning rate.",
                                check=_POSITIVE)
  optimizer: str = _field(
      "adam", "Optimizer: adam or rmsprop (tf_keras' optimizers with one "
      "fused update per variable, see tfvae/optimizers.py).",
      choices=OPTIMIZERS, check=_one_of(OPTIMIZERS))
  optimizer_rho: float | None = _field(
      None, "RMSProp's decay of its mean square (rho); default: tf_keras' "
      "0.9. tfvae-migrate sets it from a TF1 RMSPropOptimizer's decay.",
      on_command_line=False, check=Check(
          lambda r: r is None or 0 <= r < 1, "must lie in [0, 1)"))
  optimizer_epsilon: float | None = _field(
      None, "The optimizer's epsilon; default: tf_keras' 1e-7. "
      "tfvae-migrate sets it from the TF1 optimizer's.",
      on_command_line=False, check=Check(
          lambda e: e is None or e > 0, "must be positive"))
  strategy: str = _field(
      "default", "tf.distribute strategy: default (one device), mirrored "
      "(all GPUs, or all logical CPUs; see --cpu_devices) or multi_worker "
      "(MultiWorkerMirroredStrategy over the hosts of TF_CONFIG or "
      "--worker_hosts; run the same command on every worker).",
      choices=STRATEGIES, check=_one_of(STRATEGIES), resumable=True)
  beta: float = _field(1.0, "Weight of the KL (rate) term in the loss.",
                       check=_NOT_NEGATIVE)
  kl_schedule: str = _field(
      "constant", "Annealing of the KL weight (vae, cvae): constant, "
      "linear:STEPS (0 to --beta over STEPS steps) or cyclical:PERIOD (0 to "
      "--beta over the first half of every PERIOD steps, then --beta). A "
      "function of the checkpointed step, so resuming continues it.",
      parse=_parse_kl_schedule)
  gaussian_scale: float = _field(
      0.1, "Pixel standard deviation of --likelihood=gaussian.",
      check=_POSITIVE)
  steps_per_call: int = _field(
      100, "Training steps per call of the compiled step function (a "
      "tf.range loop; fewer Python round trips, same results; see "
      "BENCHMARKS.md).", check=_POSITIVE, resumable=True)
  save_every_steps: int = _field(
      1000, "Save a checkpoint every this many steps (and at the end of "
      "every epoch).", check=_POSITIVE, resumable=True)
  keep_checkpoints: int = _field(3, "Number of checkpoints kept.",
                                 check=_POSITIVE, resumable=True)
  clip_norm: float = _field(
      0.0, "Clip gradients to this global norm (0: no clipping).",
      check=_NOT_NEGATIVE)
  jit: bool = _field(
      False, "Compile the loss and gradients with XLA (jit_compile).",
      resumable=True)
  # Mixed precision (issue 17).
  precision: str = _field(
      "float32", "Arithmetic of the networks: float32; mixed_bfloat16 "
      "(matmuls, convolutions and activations in bfloat16; 1.6x (MLP) to "
      "2.2x (conv) faster on a CPU with AVX512_BF16); mixed_float16 (float16 compute with "
      "dynamic loss scaling, for GPUs). Variables, optimizer state, "
      "log-probabilities, the KL and every sum stay float32. Part of the "
      "run: a resumed run keeps it (see tfvae/precision.py).",
      choices=PRECISIONS, check=_one_of(PRECISIONS))
  log_every_steps: int = _field(200, "Steps between progress lines.",
                                check=_POSITIVE, resumable=True)
  cpu_devices: int = _field(
      0, "Split the CPU into this many logical devices (for "
      "--strategy=mirrored without GPUs); 0 leaves it alone.",
      check=_NOT_NEGATIVE, resumable=True)
  # The model family's fields (issue 6).
  free_bits: float = _field(
      0.0, "Free bits (vae, cvae): nats per latent dimension and example "
      "below which the KL is not penalised (0: off).", check=_NOT_NEGATIVE)
  num_importance_samples: int = _field(
      5, "k, importance samples per example of the iwae bound (iwae).",
      check=_POSITIVE)
  num_classes: int = _field(
      10, "Number of class labels fed to the cvae; must match the data set.",
      check=_POSITIVE)
  noise: str = _field(
      "salt_and_pepper:0.1", "Training-time corruption of the denoising_ae's "
      "input: salt_and_pepper:P (pixel set to 0 or 1 with probability P), "
      "gaussian:S (add S * N(0,1), clip to [0,1]) or masking:P (pixel set to "
      "0 with probability P).", parse=_parse_noise)
  sparsity_penalty: str = _field(
      "kl", "Sparsity penalty of the sparse_ae's sigmoid code: kl (KL from "
      "--sparsity_target to each unit's mean activation over the batch) or "
      "l1 (sum of activations per example).", choices=SPARSITY_PENALTIES,
      check=_one_of(SPARSITY_PENALTIES, "choose kl or l1"))
  sparsity_weight: float = _field(
      0.1, "Weight of the sparse_ae's sparsity penalty.", check=_NOT_NEGATIVE)
  sparsity_target: float = _field(
      0.05, "Target mean activation of the sparse_ae's code units (kl "
      "penalty), in (0, 1).", check=_OPEN_UNIT_INTERVAL)
  contractive_weight: float = _field(
      0.1, "Weight of the contractive_ae's penalty, the squared Frobenius "
      "norm of the encoder Jacobian.", check=_NOT_NEGATIVE)
  image_shape: tuple | None = _field(
      None, "(H, W, C) of the data, filled in from the data set.",
      on_command_line=False, length=3)
  # The architecture of a model migrated from TF1 or Keras (tfvae-migrate,
  # issue 14), read from its graph; tfvae's own runs keep the defaults.
  decoder_hidden_sizes: tuple | None = _field(
      None, "MLP decoder hidden widths from z upwards; default: the "
      "encoder's, reversed.", on_command_line=False,
      check=Check(lambda widths: widths is None or all(w > 0 for w in widths),
                  "widths must be positive"))
  encoder_activations: str | None = _field(
      None, "Comma-separated activation of each MLP encoder hidden layer; "
      "default: --activation for every layer.", on_command_line=False,
      parse=_parse_layer_activations)
  decoder_activations: str | None = _field(
      None, "Comma-separated activation of each MLP decoder hidden layer "
      "from z upwards (one for a conv decoder); default: --activation for "
      "every layer.", on_command_line=False)
  decoder_conv_channels: tuple | None = _field(
      None, "Channels after the dense layer and after the stride-2 "
      "transposed convolution of a conv decoder under an mlp encoder; "
      "default: the decoder follows --network.", on_command_line=False,
      length=2, check=Check(lambda c: c is None or all(w > 0 for w in c),
                            "channels must be positive"))
  encoder_conv_layers: str | None = _field(
      None, "A migrated TF1 conv encoder: its convolutions, comma-separated "
      "conv:CHANNELS:KERNEL:STRIDE:ACTIVATION (SAME padding), then flatten "
      "and the dense heads; default: the encoder follows --network.",
      on_command_line=False, parse=lambda c: _parse_conv_layers(
          c, "encoder_conv_layers"))
  decoder_conv_layers: str | None = _field(
      None, "A migrated TF1 conv decoder: dense:HxWxC:ACTIVATION, then "
      "(conv|conv_transpose):CHANNELS:KERNEL:STRIDE:ACTIVATION layers, the "
      "last giving the likelihood's parameters; default: the decoder "
      "follows --network.", on_command_line=False,
      parse=lambda c: _parse_conv_layers(c, "decoder_conv_layers"))
  posterior_scale: str = _field(
      "softplus", "How the encoder's second half of outputs r becomes the "
      "posterior scale: softplus (softplus(r)), log_variance (exp(r / 2)) "
      "or log_scale (exp(r)), plus --posterior_scale_floor.",
      choices=POSTERIOR_SCALES, check=_one_of(POSTERIOR_SCALES),
      on_command_line=False)
  posterior_scale_floor: float = _field(
      1e-5, "Added to the posterior scale.", check=_NOT_NEGATIVE,
      on_command_line=False)

  def __post_init__(self):
    """Checks every field's type; converts lists to tuples, ints to floats.

    Raises:
      FieldTypeError: Naming the first field whose value has another type
        than declared ("FIELD: expected an integer, found "2"").
    """
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      types = typing.get_args(f.type) or (f.type,)
      kind = _without_none(f.type)
      length = f.metadata[_SPEC].length
      if value is None and type(None) in types:
        continue
      if not _has_type(value, kind, length):
        expected = _type_name(kind, length)
        if type(None) in types:
          expected += " or null"
        raise FieldTypeError(
            f"{f.name}: expected {expected}, found {_as_json(value)}")
      if kind is tuple:
        setattr(self, f.name, tuple(int(v) for v in value))
      elif kind in (int, float):
        setattr(self, f.name, kind(value))

  @property
  def hidden_activation(self):
    """The activation actually used: the explicit one or the network's."""
    if self.activation:
      return self.activation
    return "tanh" if self.network == "mlp" else "relu"

  def validate(self):
    """Checks the values of every field, in field order.

    Raises:
      errors.TfvaeError: Naming the first bad field as its flag,
        "--FLAG=VALUE: why".
    """
    specs = [(f.name, f.metadata[_SPEC], _without_none(f.type))
             for f in dataclasses.fields(self)]
    for name, spec, kind in specs:
      value = getattr(self, name)
      checks = [] if value is None else {int: [_INT64],
                                         float: [_FINITE]}.get(kind, [])
      for check in [*checks, spec.check]:
        if check is not None and not check.ok(value):
          why = check.why() if callable(check.why) else check.why
          raise errors.TfvaeError(f"--{name}={value!r}: {why}")
    for _, spec, _ in specs:
      if spec.parse is not None:
        spec.parse(self)

  def replace(self, **changes):
    """A copy with `changes` ({field: value}) applied."""
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    """{field: value} of plain JSON types (tuples become lists)."""
    d = dataclasses.asdict(self)
    d["hidden_sizes"] = list(self.hidden_sizes)
    for name in ("decoder_hidden_sizes", "decoder_conv_channels"):
      if getattr(self, name) is not None:
        d[name] = list(getattr(self, name))
    if self.image_shape is not None:
      d["image_shape"] = list(self.image_shape)
    return d

  @classmethod
  def from_dict(cls, d):
    """Builds a Config from a dict, ignoring keys this version doesn't know."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})

  def effective(self):
    """A copy with each value that stands for a default made explicit: the
    activation the network actually uses (`hidden_activation`)."""
    return self.replace(activation=self.hidden_activation)

  def differences(self, other, ignore=None, effective=True):
    """Names of fields whose values differ, except those in `ignore`.

    Args:
      other: Another `Config`.
      ignore: Field names to leave out; None: `RESUMABLE_FIELDS`.
      effective: Compare the values in effect (`effective()`): an MLP's
        activation None and "tanh" are then the same.
    """
    ignore = RESUMABLE_FIELDS if ignore is None else ignore
    if effective:
      self, other = self.effective(), other.effective()  # pylint: disable=self-cls-assignment
    a, b = self.to_dict(), other.to_dict()
    return sorted(k for k in a if k not in ignore and a[k] != b.get(k))


@dataclasses.dataclass(frozen=True)
class Field:
  """One field of `Config`, as programs that set it see it.

  Attributes:
    name: The field's (and its flag's) name.
    type: Its type without None: str, int, float, bool or tuple.
    default: Its default value.
    help: What it means.
    choices: The values it takes; empty: any of its type.
    resumable: Whether it may differ when a run is resumed.
    on_command_line: Whether `tfvae-train` has a flag for it.
  """
  name: str
  type: type
  default: Any
  help: str
  choices: tuple
  resumable: bool
  on_command_line: bool


def _without_none(annotation):
  types = [t for t in typing.get_args(annotation) if t is not type(None)]
  return types[0] if types else annotation


def fields():
  """The `Field`s of `Config`, in declaration order."""
  return tuple(
      Field(name=f.name, type=_without_none(f.type), default=f.default,
            help=f.metadata[_SPEC].help, choices=f.metadata[_SPEC].choices,
            resumable=f.metadata[_SPEC].resumable,
            on_command_line=f.metadata[_SPEC].on_command_line)
      for f in dataclasses.fields(Config))


# Fields that may differ when a run is resumed: they change how the run is
# executed or how long it goes on, not what is being trained.
RESUMABLE_FIELDS = frozenset(f.name for f in fields() if f.resumable)


def save(config, path):
  """Writes `config` as JSON to `path` atomically (temp file + rename)."""
  # allow_nan=False: inf and NaN are not JSON (`validate` refuses them).
  text = json.dumps(config.to_dict(), indent=2, sort_keys=True,
                    allow_nan=False)
  with files.atomic_open(path, "w") as f:
    f.write(text + "\n")


def load(path):
  """Reads a Config saved by `save`, checking each field's type and value.

  Every program that reads a run (resuming tfvae-train, tfvae-export, and
  open_model's users) reads its config here, so a hand-edited config.json
  with a value of the wrong type (`"latent_dim": "2"`, `"hidden_sizes":
  "512"`) or out of range (an unknown model, `"learning_rate": Infinity`)
  is refused in one line naming the file and the field.

  Raises:
    errors.RunDirError: If the file is missing or not a valid config.
  """
  try:
    with open(path) as f:
      d = json.load(f)
  except FileNotFoundError:
    raise errors.RunDirError(f"{path}: no such file (is this a tfvae run "
                             "directory?)") from None
  except (OSError, ValueError) as e:
    raise errors.RunDirError(f"{path}: not a valid tfvae config: {e}") from None
  if not isinstance(d, dict):
    raise errors.RunDirError(f"{path}: not a valid tfvae config: expected a "
                             "JSON object")
  try:
    config = Config.from_dict(d)
  except FieldTypeError as e:
    raise errors.RunDirError(f"{path}: {e}") from None
  except (TypeError, ValueError) as e:
    raise errors.RunDirError(f"{path}: not a valid tfvae config: {e}") from None
  try:
    config.validate()
  except errors.TfvaeError as e:
    # validate names flags ("--latent_dim=0: ..."); here the field is at fault.
    raise errors.RunDirError(f"{path}: {str(e).removeprefix('--')}") from None
  return config
