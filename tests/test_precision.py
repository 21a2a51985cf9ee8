"""Tests of mixed precision (tfvae/precision.py) in the nets and training."""
import glob
import os
import shutil

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import tfvae
from tfvae import kinds
from tfvae import launch
from tfvae import nets
from tfvae import optimizers
from tfvae import precision
from tfvae import runs
from tfvae import training
from tests import util

# 256 training images at batch 32: 8 steps per epoch.
_SMALL = dict(epochs=1, batch_size=32, hidden_sizes=(32,), latent_dim=2,
              save_every_steps=10**6, log_every_steps=10**6)


def _data():
  return util.small_fashion_mnist(num_train=256, num_test=64)


def _train(run_dir, **overrides):
  return launch.run(tfvae.Config(**{**_SMALL, **overrides}), run_dir,
                    dataset=_data())


def _bfloat16_round(array):
  """`array` rounded to bfloat16 and back, in numpy float64."""
  return tf.cast(tf.cast(array, tf.bfloat16), tf.float64).numpy()


def _op_dtypes(concrete_function, op_type):
  """The dtypes (attr T) of the `op_type` ops of a function and its callees."""
  graph_def = concrete_function.graph.as_graph_def()
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes.extend(function.node_def)
  return {tf.as_dtype(n.attr["T"].type).name for n in nodes
          if n.op == op_type}


class NetsTest(tf.test.TestCase):

  def test_linear_computes_in_its_inputs_dtype(self):
    layer = nets.Linear(5, 3)
    layer.b.assign([0.5, -1.0, 2.0])
    x = np.random.RandomState(0).uniform(-1, 1, [4, 5]).astype(np.float32)
    got = layer(tf.constant(x, tf.bfloat16))
    self.assertEqual(got.dtype, tf.bfloat16)
    # Products of bfloat16 numbers, summed at least in bfloat16.
    want = (_bfloat16_round(x) @ _bfloat16_round(layer.w.numpy())
            + layer.b.numpy())
    self.assertAllClose(tf.cast(got, tf.float64), want, rtol=2e-2, atol=2e-2)
    self.assertEqual(layer(tf.constant(x)).dtype, tf.float32)

  def test_run_casts_back_to_float32_and_keeps_variables(self):
    model = kinds.build_model(tfvae.Config(network="conv", latent_dim=2,
                                           image_shape=(28, 28, 1)))
    images = tf.constant(_data().test.images[:4], tf.float32) / 255.
    want_q = model.approx_posterior(images)
    want_p = model.likelihood(want_q.mean())
    precision.set_compute_dtype(model, "mixed_bfloat16")
    q = model.approx_posterior(images)
    p = model.likelihood(q.mean())
    for value in (q.mean(), q.stddev(), p.log_prob(images)):
      self.assertEqual(value.dtype, tf.float32)
    self.assertTrue(all(v.dtype == tf.float32 for v in model.variables))
    self.assertAllClose(q.mean(), want_q.mean(), rtol=0.05, atol=0.05)
    self.assertAllClose(p.log_prob(images), want_p.log_prob(images),
                        rtol=1e-2)
    # ... and differ by bfloat16's rounding (8 bits of mantissa).
    self.assertNotAllClose(q.mean(), want_q.mean(), rtol=1e-5, atol=0)


class MixedTrainingTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("mlp", "mlp"), ("conv", "conv"))
  def test_bfloat16_training_is_close_to_float32(self, network):
    base = dict(network=network, epochs=1)
    f32, f32_records = _train(self.create_tempdir().full_path, **base)
    bf16, bf16_records = _train(self.create_tempdir().full_path, **base,
                                precision="mixed_bfloat16")
    for key in ("train_loss", "test_elbo"):
      got, want = bf16_records[0][key], f32_records[0][key]
      self.assertTrue(np.isfinite(got))
      self.assertAllClose(got, want, rtol=2e-3, msg=key)
    for v in [*bf16.model.variables, *bf16.optimizer.variables]:
      self.assertIn(v.dtype, (tf.float32, tf.int64), v.name)
    # The low precision is real: the step's matmuls run in bfloat16.
    step = bf16.train_step.steps_on_device.get_concrete_function(
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32))
    op = "MatMul" if network == "mlp" else "Conv2D"
    self.assertIn("bfloat16", _op_dtypes(step, op))
    self.assertNotIn("bfloat16", _op_dtypes(
        f32.train_step.steps_on_device.get_concrete_function(
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32)), op))

  @parameterized.named_parameters(("bfloat16", "mixed_bfloat16"),
                                  ("float16", "mixed_float16"))
  def test_resumed_run_equals_uninterrupted_run(self, name):
    settings = dict(epochs=2, save_every_steps=3, keep_checkpoints=100,
                    precision=name)
    whole = self.create_tempdir().full_path
    trainer, _ = _train(whole, **settings)
    want = [v.numpy() for v in trainer.model.trainable_variables]
    part = self.create_tempdir().full_path
    shutil.copy(runs.config_path(whole), runs.config_path(part))
    os.makedirs(runs.ckpt_dir(part))
    for f in glob.glob(os.path.join(runs.ckpt_dir(whole), "ckpt-6.*")):
      shutil.copy(f, runs.ckpt_dir(part))
    tf.compat.v1.train.update_checkpoint_state(runs.ckpt_dir(part), "ckpt-6")
    resumed, _ = _train(part, **settings)
    for a, b in zip(want, resumed.model.trainable_variables):
      self.assertAllEqual(a, b.numpy())
    saved = [n for n, _ in tf.train.list_variables(
        os.path.join(runs.ckpt_dir(whole), "ckpt-6"))]
    self.assertEqual(any("loss_scale" in n for n in saved),
                     name == "mixed_float16")
    if name == "mixed_float16":
      self.assertEqual(float(resumed.optimizer.loss_scale),
                       float(trainer.optimizer.loss_scale))

  def test_float16_skips_a_step_whose_gradients_overflow(self):
    # Batch 4: 64 steps in the epoch.
    config = tfvae.Config(**{**_SMALL, "batch_size": 4},
                          precision="mixed_float16", image_shape=(28, 28, 1))
    strategy = tf.distribute.get_strategy()
    model = launch.build_model(config, strategy)
    # A scale of 2^60 makes every float16 gradient of the scaled loss inf.
    optimizer = precision.loss_scale_optimizer(optimizers.Adam(1e-3),
                                               initial_scale=2.**60)
    trainer = training.Trainer(
        config, self.create_tempdir().full_path, _data(), strategy, model,
        kinds.build_objective(config), optimizer)
    before = [v.numpy() for v in model.trainable_variables]
    run = trainer.train_step.runner(0, 0)
    sums = run(1).numpy()
    self.assertTrue(np.all(np.isfinite(sums)))
    self.assertEqual(int(trainer.step), 1)
    self.assertEqual(float(optimizer.loss_scale), 2.**59)
    for a, b in zip(before, model.trainable_variables):
      self.assertAllEqual(a, b.numpy())
    # Halved until the gradients fit float16 (2^60 / 2^k), then it trains.
    run(63)
    self.assertLess(float(optimizer.loss_scale), 2.**30)
    self.assertNotAllClose(before[0], model.trainable_variables[0].numpy())


if __name__ == "__main__":
  tf.test.main()
