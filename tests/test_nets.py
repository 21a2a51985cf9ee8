"""Tests of tfvae.nets: initialisation statistics and shapes."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfvae import nets


class InitialisationTest(tf.test.TestCase, parameterized.TestCase):

  def test_linear_weights_have_glorot_uniform_statistics(self):
    tf.random.set_seed(0)
    layer = nets.Linear(1000, 600)
    w = layer.w.numpy()
    limit = np.sqrt(6.0 / 1600)
    self.assertLessEqual(np.abs(w).max(), limit)
    # Var(U(-a, a)) = a^2 / 3 = 2 / (fan_in + fan_out).
    self.assertAllClose(w.var(), 2.0 / 1600, rtol=0.02)
    self.assertAllClose(w.mean(), 0.0, atol=0.002)
    # Uniform, not Normal: the fraction within a/2 is 1/2 (Normal: ~0.66).
    self.assertAllClose(np.mean(np.abs(w) < limit / 2), 0.5, atol=0.01)
    self.assertAllEqual(layer.b.numpy(), np.zeros(600))

  @parameterized.named_parameters(("conv", nets.Conv2D, 32, 64),
                                  ("transpose", nets.Conv2DTranspose, 64, 32))
  def test_conv_weights_use_receptive_field_fans(self, cls, cin, cout):
    tf.random.set_seed(1)
    layer = cls(cin, cout, kernel_size=3)
    expected_var = 2.0 / (9 * cin + 9 * cout)
    self.assertAllClose(layer.w.numpy().var(), expected_var, rtol=0.05)
    self.assertAllEqual(layer.b.numpy(), np.zeros(cout))

  def test_mlp_variables_are_named_and_counted(self):
    mlp = nets.MLP(784, [512, 4], name="mlp")
    self.assertLen(mlp.trainable_variables, 4)
    self.assertTrue(all(v.name.startswith("mlp/") for v in mlp.variables))
    self.assertEqual(mlp(tf.zeros([3, 784])).shape, [3, 4])

  def test_conv_nets_map_odd_image_sizes(self):
    enc = nets.ConvEncoderNet((27, 13, 3), 10)
    dec = nets.ConvDecoderNet(5, (27, 13, 3), 6)
    self.assertEqual(enc(tf.zeros([2, 27, 13, 3])).shape, [2, 10])
    self.assertEqual(dec(tf.zeros([2, 5])).shape, [2, 27, 13, 6])

  @parameterized.parameters("mlp", "conv")
  def test_factory_names_nets_after_their_architecture(self, network):
    encoder = nets.encoder_net(network, (8, 6, 1), 10, (16,), "tanh",
                               condition_size=3)
    decoder = nets.decoder_net(network, 4, (8, 6, 2), (16,), "tanh")
    self.assertEqual(encoder.name, network)
    self.assertEqual(decoder.name, network)
    inputs = (tf.zeros([2, 8 * 6 + 3]) if network == "mlp"
              else tf.zeros([2, 8, 6, 1 + 3]))
    self.assertEqual(encoder(inputs).shape, [2, 10])
    expected = [2, 8 * 6 * 2] if network == "mlp" else [2, 8, 6, 2]
    self.assertEqual(decoder(tf.zeros([2, 4])).shape, expected)

  def test_factory_rejects_unknown_networks(self):
    for make in (lambda: nets.encoder_net("rnn", (4, 4, 1), 2),
                 lambda: nets.decoder_net("rnn", 2, (4, 4, 1))):
      with self.assertRaisesRegex(ValueError, "unknown network 'rnn'; "
                                  "choose mlp or conv"):
        make()

  def test_unknown_activation(self):
    with self.assertRaisesRegex(ValueError, "unknown activation 'nope'"):
      nets.MLP(3, [2], activation="nope")


class ConvBiasTest(tf.test.TestCase):
  """The convolutions add their bias with BiasAdd, whose gradient grappler
  fuses into the filter gradient (Conv2DBackpropFilterWithBias); an add's
  gradient is a separate Sum over the batch and the map (BENCHMARKS.md)."""

  def test_conv_layers_add_the_bias_with_bias_add(self):
    conv = nets.Conv2D(2, 3, 3, 2, name="c")
    transposed = nets.Conv2DTranspose(3, 2, 3, 2, name="t")
    conv.b.assign([1.0, -2.0, 0.5])
    transposed.b.assign([0.25, -1.0])
    x = tf.constant(np.random.default_rng(0).random([2, 6, 6, 2]),
                    tf.float32)
    function = tf.function(lambda x: transposed(conv(x), (6, 6)))
    ops = [op.type for op in
           function.get_concrete_function(x).graph.get_operations()]
    self.assertEqual(2, ops.count("BiasAdd"))
    self.assertNotIn("AddV2", ops)
    # The values are the convolutions' plus the biases.
    want = tf.nn.conv2d(x, conv.w, 2, "SAME") + conv.b
    want = tf.nn.conv2d_transpose(want, transposed.w, [2, 6, 6, 2], 2,
                                  "SAME") + transposed.b
    self.assertAllClose(want, function(x), atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
