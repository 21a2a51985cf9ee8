"""Tests of tfvae.kinds: the registry of model kinds and likelihood names."""
import os
import subprocess
import sys
import textwrap

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import tfvae
from tfvae import autoencoders
from tfvae import kinds
from tfvae import likelihoods
from tfvae import models
from tfvae import objectives
from tfvae import launch
from tests import util

_ALL_KINDS = ("vae", "iwae", "cvae", "ae", "denoising_ae", "sparse_ae",
              "contractive_ae")


def _config(**changes):
  fields = dict(epochs=1, batch_size=32, hidden_sizes=(16,), latent_dim=2,
                save_every_steps=10**6, log_every_steps=10**6)
  fields.update(changes)
  return tfvae.Config(**fields)


class RegistryTest(tf.test.TestCase, parameterized.TestCase):

  def test_names_keep_the_flag_order(self):
    self.assertEqual(kinds.names(), _ALL_KINDS)
    self.assertEqual(kinds.likelihood_names(),
                     ("bernoulli", "continuous_bernoulli", "gaussian",
                      "gaussian_learned", "gaussian_identity",
                      "gaussian_log_variance",
                      "gaussian_log_variance_identity"))

  def test_likelihood_names_are_the_registered_likelihoods(self):
    self.assertEqual(kinds.likelihood_names(), likelihoods.NAMES)
    for name in kinds.likelihood_names():
      self.assertEqual(likelihoods.get(name).name, name)
      self.assertNotIn("\n", kinds.likelihood_description(name))

  def test_imports_without_tensorflow(self):
    # Loaded by path: the tfvae package itself may import TensorFlow.
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location(
            "kinds_alone", {os.path.join(util.REPO, "tfvae", "kinds.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(",".join(module.names()), ",".join(module.likelihood_names()),
              module.get("cvae").description)
        assert "tensorflow" not in sys.modules, "kinds imported TensorFlow"
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn(",".join(_ALL_KINDS), result.stdout)

  @parameterized.parameters(*_ALL_KINDS)
  def test_capabilities_describe_the_built_model(self, name):
    kind = kinds.get(name)
    self.assertTrue(kind.description)
    self.assertNotIn("\n", kind.description)
    model = kinds.build_model(_config(model=name, image_shape=(8, 8, 1)))
    self.assertEqual(model.name, name)
    self.assertEqual(kind.can_generate, models.can_generate(model))
    self.assertEqual(kind.conditional, models.is_conditional(model))
    self.assertEqual(kind.autoencoder,
                     isinstance(model, autoencoders.Autoencoder))
    self.assertEqual(kind.scored, name in ("vae", "iwae"))
    objective = kinds.build_objective(_config(model=name))
    self.assertIsInstance(objective, objectives.Objective)
    self.assertEqual(objective.uses_labels, kind.conditional)

  def test_unknown_kind_names_the_choices(self):
    with self.assertRaisesRegex(ValueError, "unknown model 'nope'; choose "
                                "one of vae, iwae, cvae"):
      kinds.get("nope")
    with self.assertRaisesRegex(ValueError, "image_shape must be set"):
      kinds.build_model(_config())

  def test_a_kind_registers_once(self):
    with self.assertRaisesRegex(ValueError, "'vae' is registered already"):
      kinds.register(kinds.get("vae"))


class _ToyVAE(models.VAE):
  """A VAE whose kind only this test registers."""


class _HalfBetaObjective(objectives.ElboObjective):
  """The ELBO with beta 1/2, reporting the weighted rate too."""
  metric_names = ("elbo", "rate", "distortion", "weighted_rate")

  def __init__(self):
    super().__init__(beta=0.5)

  def __call__(self, model, images, noise, step=None, labels=None):
    loss, metrics = super().__call__(model, images, noise, step, labels)
    metrics["weighted_rate"] = self.beta * metrics["rate"]
    return loss, metrics


def _toy_model(config):
  return _ToyVAE(config.image_shape, config.latent_dim, config.network,
                 config.hidden_sizes, config.hidden_activation,
                 config.likelihood, config.gaussian_scale, name=config.model)


class NewKindTest(tf.test.TestCase):
  """A kind is its classes plus one registry entry: nothing else changes."""

  def setUp(self):
    super().setUp()
    kinds.register(kinds.Kind(
        "toy_vae", "a VAE trained with beta 1/2", _toy_model,
        lambda config: _HalfBetaObjective()))
    self.addCleanup(kinds.unregister, "toy_vae")

  def test_trains_through_the_real_entry_point(self):
    self.assertEqual(kinds.names()[-1], "toy_vae")
    run_dir = self.create_tempdir().full_path
    trainer, records = launch.run(
        _config(model="toy_vae"), run_dir,
        dataset=util.small_fashion_mnist(num_train=256, num_test=64))
    self.assertIsInstance(trainer.model, _ToyVAE)
    self.assertEqual(int(trainer.step), 8)
    self.assertAllClose(records[-1]["test_weighted_rate"],
                        0.5 * records[-1]["test_rate"], rtol=1e-5)
    self.assertTrue(np.isfinite(records[-1]["train_elbo"]))

  def test_unregister_removes_it(self):
    kinds.unregister("toy_vae")
    self.assertNotIn("toy_vae", kinds.names())
    kinds.register(kinds.Kind("toy_vae", "again", _toy_model,
                              lambda config: _HalfBetaObjective()))


if __name__ == "__main__":
  tf.test.main()
