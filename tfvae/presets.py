"""Named configurations from the literature, as overrides of `config.Config`.

A preset sets the fields that define a published model; every other field
keeps its default, and flags given explicitly override the preset's values.

  iwae_mnist_1layer   The 1-stochastic-layer VAE of Burda et al. (2015),
                      "Importance Weighted Autoencoders", Table 1: encoder
                      and decoder MLPs of 2 hidden layers of 200 tanh units,
                      50 latent units, Bernoulli pixels, dynamically
                      binarised MNIST, batch size 20. With the paper's
                      3280-epoch schedule it reaches NLL 86.76 nats (k=5000)
                      on the fixed binarisation of the MNIST test set.
"""
PRESETS = {
    "iwae_mnist_1layer": {
        "dataset": "mnist",
        "model": "vae",
        "network": "mlp",
        "hidden_sizes": (200, 200),
        "activation": "tanh",
        "latent_dim": 50,
        "likelihood": "bernoulli",
        "binarize": "dynamic",
        "batch_size": 20,
    },
}


def names():
  """The names of the presets, sorted."""
  return sorted(PRESETS)


def get(name):
  """The config overrides of preset `name` (a new dict).

  Raises:
    KeyError: If there is no such preset.
  """
  return dict(PRESETS[name])


def apply(name, fields, explicit):
  """Fills in a preset's values where no flag was given explicitly.

  Args:
    name: A preset name, or None for no preset.
    fields: {field: value} of the requested config (flag values).
    explicit: Names of the fields set explicitly on the command line.

  Returns:
    (fields, explicit): new dicts/sets in which the preset's fields that
    were not explicit take its values and count as explicit (so resuming a
    run trained with other values is refused).
  """
  fields, explicit = dict(fields), set(explicit)
  if name:
    overrides = {f: v for f, v in get(name).items() if f not in explicit}
    fields.update(overrides)
    explicit |= set(overrides)
  return fields, explicit
