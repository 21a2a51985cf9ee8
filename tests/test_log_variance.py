"""The gaussian_log_variance likelihood end to end: train, export, decode."""
import json
import os

import numpy as np
import tensorflow as tf

import tfvae
from tfvae import export
from tfvae import launch
from tfvae import runs
from tests import util


class GaussianLogVarianceRunTest(tf.test.TestCase):

  def test_native_run_trains_and_its_export_decodes_loc_and_scale(self):
    run_dir = os.path.join(self.get_temp_dir(), "run")
    config = tfvae.Config(
        likelihood="gaussian_log_variance", epochs=2, batch_size=32,
        hidden_sizes=(16,), latent_dim=2, save_every_steps=10**6,
        log_every_steps=10**6)
    launch.run(config, run_dir,
               dataset=util.small_fashion_mnist(num_train=128, num_test=32))
    with open(runs.metrics_path(run_dir)) as f:
      elbos = [json.loads(line)["test_elbo"] for line in f]
    self.assertLen(elbos, 2)
    self.assertGreater(elbos[-1], elbos[0] + 1.0)

    path = export.export_run(run_dir, os.path.join(self.get_temp_dir(), "x"),
                             part="generator")
    decode = tf.saved_model.load(path).signatures["decode"]
    z = tf.random.stateless_normal([4, 2], seed=[5, 6])
    got = decode(z=z)
    self.assertCountEqual(got.keys(), ("mean", "loc", "scale"))
    _, model, _ = runs.restore_model(run_dir)
    self.assertEqual(model.decoder.likelihood.name, "gaussian_log_variance")
    params = model.decoder.params(z).numpy().astype(np.float64)
    raw_loc, raw_log_variance = params[..., :1], params[..., 1:]
    loc = 1 / (1 + np.exp(-raw_loc))
    scale = np.exp(0.5 * np.clip(raw_log_variance, -15, 15))
    self.assertAllClose(got["loc"], loc, atol=1e-5, rtol=0)
    self.assertAllClose(got["mean"], loc, atol=1e-5, rtol=0)
    self.assertAllClose(got["scale"], scale, atol=1e-5, rtol=1e-5)
    # The model itself, not only its export, gives that density.
    x = util.small_fashion_mnist(num_train=128, num_test=32).test.images[:4]
    x = np.asarray(x, np.float64).reshape(4, 28, 28, 1) / 255.0
    want = -0.5 * np.sum(
        np.log(2 * np.pi) + 2 * np.log(scale) + (x - loc) ** 2 / scale ** 2,
        axis=(1, 2, 3))
    self.assertAllClose(model.likelihood(z).log_prob(x.astype(np.float32)),
                        want, rtol=1e-4)


if __name__ == "__main__":
  tf.test.main()
