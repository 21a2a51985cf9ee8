"""The kinds of model and of decoder likelihood, by name, without TensorFlow.

PROVISIONAL: a stand-in for the model-kind registry written on another branch;
it offers only what `config` needs (names and one-line descriptions), so that
flags, help and validation can be built before TensorFlow is imported.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Kind:
  """A kind of model.

  Attributes:
    name: The value of `--model`.
    description: One line saying what it trains and which flags tune it.
  """
  name: str
  description: str


_KINDS = (
    Kind("vae", "ELBO, see --beta, --kl_schedule, --free_bits"),
    Kind("iwae", "importance-weighted bound, see --num_importance_samples"),
    Kind("cvae", "conditional on the class label"),
    Kind("ae", "deterministic autoencoder"),
    Kind("denoising_ae", "see --noise"),
    Kind("sparse_ae", "see --sparsity_*"),
    Kind("contractive_ae", "see --contractive_weight"),
)
_BY_NAME = {kind.name: kind for kind in _KINDS}

_LIKELIHOOD_NAMES = ("bernoulli", "continuous_bernoulli", "gaussian",
                     "gaussian_learned")


def names():
  """The model kinds' names, in the order help texts list them."""
  return tuple(kind.name for kind in _KINDS)


def get(name):
  """The `Kind` called `name`.

  Raises:
    KeyError: If there is no such kind.
  """
  return _BY_NAME[name]


def likelihood_names():
  """The names of the decoder likelihoods (see `likelihoods.get`)."""
  return _LIKELIHOOD_NAMES
