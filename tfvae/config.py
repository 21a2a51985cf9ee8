"""The configuration of a training run, saved as JSON in its run directory.

Later programs (export, evaluate, plot) rebuild the model from the run
directory alone, so every field that defines the model or its data is here.
"""
import dataclasses
import json

from tfvae import errors
from tfvae import files

# Fields that may differ when a run is resumed: they change how the run is
# executed or how long it goes on, not what is being trained.
RESUMABLE_FIELDS = frozenset({
    "epochs", "data_dir", "save_every_steps", "keep_checkpoints", "jit",
    "strategy", "steps_per_call", "log_every_steps", "cpu_devices",
})


@dataclasses.dataclass
class Config:
  """Everything that defines a training run.

  Attributes:
    dataset: "fashion_mnist" or "mnist".
    data_dir: Where to look for the data first (None: the default places).
    model: The kind of model (see `models.MODEL_KINDS`): vae, iwae, cvae,
      ae, denoising_ae, sparse_ae or contractive_ae.
    network: "mlp" or "conv".
    latent_dim: Dimension of z.
    hidden_sizes: Hidden widths of the MLP encoder (the decoder mirrors them).
    activation: Hidden activation; None means the network's default (tanh for
      mlp, relu for conv).
    likelihood: Decoder likelihood (see `likelihoods.NAMES`).
    gaussian_scale: Pixel standard deviation of the fixed-scale Gaussian.
    binarize: "none", "static" or "dynamic".
    beta: Weight of the rate (KL) term in the training loss.
    kl_schedule: Annealing of the rate's weight (vae, cvae): "constant",
      "linear:STEPS" or "cyclical:PERIOD" (see `objectives.KlSchedule`).
    free_bits: Nats per latent dimension below which the rate is not
      penalised (vae, cvae; 0 disables).
    num_importance_samples: k of the importance-weighted bound (iwae).
    num_classes: Number of class labels (cvae).
    noise: Corruption of the denoising autoencoder's inputs, "KIND:LEVEL"
      (see `autoencoders.Corruption`).
    sparsity_penalty: "kl" (to --sparsity_target) or "l1" (sparse_ae).
    sparsity_weight: Weight of the sparsity penalty (sparse_ae).
    sparsity_target: Target mean activation of the code units (sparse_ae,
      kl penalty).
    contractive_weight: Weight of the squared Frobenius norm of the encoder
      Jacobian (contractive_ae).
    seed: Seed of initialisation, data order and sampling.
    batch_size: Global batch size (split across replicas).
    epochs: Number of passes over the training split.
    optimizer: "adam" or "rmsprop".
    learning_rate: Optimizer step size.
    clip_norm: Clip gradients to this global norm; 0 disables clipping.
    jit: Compile the loss and gradient computation with XLA.
    strategy: "default", "mirrored" or "multi_worker".
    steps_per_call: Training steps run per call of the compiled step.
    save_every_steps: Save a checkpoint every this many steps (and at each
      epoch end).
    keep_checkpoints: How many checkpoints to keep.
    log_every_steps: Progress line interval.
    cpu_devices: Split the CPU into this many logical devices (0: leave it).
    image_shape: (H, W, C) of the data, filled in from the data set.
  """
  dataset: str = "fashion_mnist"
  data_dir: str | None = None
  model: str = "vae"
  network: str = "mlp"
  latent_dim: int = 2
  hidden_sizes: tuple = (512,)
  activation: str | None = None
  likelihood: str = "bernoulli"
  gaussian_scale: float = 0.1
  binarize: str = "none"
  beta: float = 1.0
  kl_schedule: str = "constant"
  free_bits: float = 0.0
  num_importance_samples: int = 5
  num_classes: int = 10
  noise: str = "salt_and_pepper:0.1"
  sparsity_penalty: str = "kl"
  sparsity_weight: float = 0.1
  sparsity_target: float = 0.05
  contractive_weight: float = 0.1
  seed: int = 0
  batch_size: int = 64
  epochs: int = 10
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  clip_norm: float = 0.0
  jit: bool = False
  strategy: str = "default"
  steps_per_call: int = 100
  save_every_steps: int = 1000
  keep_checkpoints: int = 3
  log_every_steps: int = 200
  cpu_devices: int = 0
  image_shape: tuple | None = None

  def __post_init__(self):
    self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
    if self.image_shape is not None:
      self.image_shape = tuple(int(d) for d in self.image_shape)

  @property
  def hidden_activation(self):
    """The activation actually used: the explicit one or the network's."""
    if self.activation:
      return self.activation
    return "tanh" if self.network == "mlp" else "relu"

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["hidden_sizes"] = list(self.hidden_sizes)
    if self.image_shape is not None:
      d["image_shape"] = list(self.image_shape)
    return d

  @classmethod
  def from_dict(cls, d):
    """Builds a Config from a dict, ignoring keys this version doesn't know."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})

  def differences(self, other, ignore=RESUMABLE_FIELDS):
    """Names of fields whose values differ, except those in `ignore`."""
    a, b = self.to_dict(), other.to_dict()
    return sorted(k for k in a if k not in ignore and a[k] != b.get(k))


def save(config, path):
  """Writes `config` as JSON to `path` atomically (temp file + rename)."""
  with files.atomic_open(path, "w") as f:
    json.dump(config.to_dict(), f, indent=2, sort_keys=True)
    f.write("\n")


def load(path):
  """Reads a Config saved by `save`.

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
    return Config.from_dict(d)
  except (TypeError, ValueError) as e:
    raise errors.RunDirError(f"{path}: not a valid tfvae config: {e}") from None
