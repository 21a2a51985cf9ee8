# Tutorial: J. H. Metzen's 2015 notebook 'Variational Autoencoder in TensorFlow'
# (tf.Variable dicts, softplus, 784-500-500-20, log sigma^2, log(1e-10 + p), Adam).
# Saves: tf.compat.v1.train.Saver().save(sess, OUT/model.ckpt) -> model.ckpt.{index,data,meta} + checkpoint.
# Usage: python train.py --out=DIR [--steps=400] [--data_dir=...]; writes reference.json
# (the graph's own mean per-example -ELBO over the 10,000 test images, 1 posterior sample) into DIR.
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
import tensorflow as tf
import fmnist
args = fmnist.parse_args(default_steps=400)
tf.compat.v1.disable_eager_execution()
np.random.seed(0); tf.compat.v1.set_random_seed(0)

def xavier_init(fan_in, fan_out, constant=1):
  low = -constant * np.sqrt(6.0 / (fan_in + fan_out))
  high = constant * np.sqrt(6.0 / (fan_in + fan_out))
  return tf.random.uniform((fan_in, fan_out), minval=low, maxval=high, dtype=tf.float32)

class VariationalAutoencoder(object):
  def __init__(self, network_architecture, transfer_fct=tf.nn.softplus,
               learning_rate=0.001, batch_size=100):
    self.network_architecture = network_architecture
    self.transfer_fct = transfer_fct
    self.learning_rate = learning_rate
    self.batch_size = batch_size
    self.x = tf.compat.v1.placeholder(tf.float32, [None, network_architecture["n_input"]])
    self._create_network()
    self._create_loss_optimizer()
    init = tf.compat.v1.global_variables_initializer()
    self.sess = tf.compat.v1.InteractiveSession()
    self.sess.run(init)

  def _create_network(self):
    w = self._initialize_weights(**self.network_architecture)
    self.z_mean, self.z_log_sigma_sq = self._recognition_network(w["weights_recog"], w["biases_recog"])
    n_z = self.network_architecture["n_z"]
    eps = tf.random.normal((tf.shape(self.x)[0], n_z), 0, 1, dtype=tf.float32)
    self.z = tf.add(self.z_mean, tf.multiply(tf.sqrt(tf.exp(self.z_log_sigma_sq)), eps))
    self.x_reconstr_mean = self._generator_network(w["weights_gener"], w["biases_gener"])

  def _initialize_weights(self, n_hidden_recog_1, n_hidden_recog_2, n_hidden_gener_1,
                          n_hidden_gener_2, n_input, n_z):
    all_weights = dict()
    all_weights['weights_recog'] = {
        'h1': tf.Variable(xavier_init(n_input, n_hidden_recog_1)),
        'h2': tf.Variable(xavier_init(n_hidden_recog_1, n_hidden_recog_2)),
        'out_mean': tf.Variable(xavier_init(n_hidden_recog_2, n_z)),
        'out_log_sigma': tf.Variable(xavier_init(n_hidden_recog_2, n_z))}
    all_weights['biases_recog'] = {
        'b1': tf.Variable(tf.zeros([n_hidden_recog_1], dtype=tf.float32)),
        'b2': tf.Variable(tf.zeros([n_hidden_recog_2], dtype=tf.float32)),
        'out_mean': tf.Variable(tf.zeros([n_z], dtype=tf.float32)),
        'out_log_sigma': tf.Variable(tf.zeros([n_z], dtype=tf.float32))}
    all_weights['weights_gener'] = {
        'h1': tf.Variable(xavier_init(n_z, n_hidden_gener_1)),
        'h2': tf.Variable(xavier_init(n_hidden_gener_1, n_hidden_gener_2)),
        'out_mean': tf.Variable(xavier_init(n_hidden_gener_2, n_input)),
        'out_log_sigma': tf.Variable(xavier_init(n_hidden_gener_2, n_input))}
    all_weights['biases_gener'] = {
        'b1': tf.Variable(tf.zeros([n_hidden_gener_1], dtype=tf.float32)),
        'b2': tf.Variable(tf.zeros([n_hidden_gener_2], dtype=tf.float32)),
        'out_mean': tf.Variable(tf.zeros([n_input], dtype=tf.float32)),
        'out_log_sigma': tf.Variable(tf.zeros([n_input], dtype=tf.float32))}
    return all_weights

  def _recognition_network(self, weights, biases):
    layer_1 = self.transfer_fct(tf.add(tf.matmul(self.x, weights['h1']), biases['b1']))
    layer_2 = self.transfer_fct(tf.add(tf.matmul(layer_1, weights['h2']), biases['b2']))
    z_mean = tf.add(tf.matmul(layer_2, weights['out_mean']), biases['out_mean'])
    z_log_sigma_sq = tf.add(tf.matmul(layer_2, weights['out_log_sigma']), biases['out_log_sigma'])
    return z_mean, z_log_sigma_sq

  def _generator_network(self, weights, biases):
    layer_1 = self.transfer_fct(tf.add(tf.matmul(self.z, weights['h1']), biases['b1']))
    layer_2 = self.transfer_fct(tf.add(tf.matmul(layer_1, weights['h2']), biases['b2']))
    return tf.nn.sigmoid(tf.add(tf.matmul(layer_2, weights['out_mean']), biases['out_mean']))

  def _create_loss_optimizer(self):
    reconstr_loss = -tf.reduce_sum(self.x * tf.math.log(1e-10 + self.x_reconstr_mean)
                                   + (1 - self.x) * tf.math.log(1e-10 + 1 - self.x_reconstr_mean), 1)
    latent_loss = -0.5 * tf.reduce_sum(1 + self.z_log_sigma_sq - tf.square(self.z_mean)
                                       - tf.exp(self.z_log_sigma_sq), 1)
    self.per_example = reconstr_loss + latent_loss
    self.cost = tf.reduce_mean(self.per_example)
    self.optimizer = tf.compat.v1.train.AdamOptimizer(learning_rate=self.learning_rate).minimize(self.cost)

  def partial_fit(self, X):
    _, cost = self.sess.run((self.optimizer, self.cost), feed_dict={self.x: X})
    return cost

arch = dict(n_hidden_recog_1=500, n_hidden_recog_2=500, n_hidden_gener_1=500,
            n_hidden_gener_2=500, n_input=784, n_z=20)
vae = VariationalAutoencoder(arch, learning_rate=0.001, batch_size=100)
train, test = fmnist.load("train", args.data_dir), fmnist.load("test", args.data_dir)
it = fmnist.batches(train, 100)
for step in range(args.steps):
  c = vae.partial_fit(next(it))
  if step % 100 == 0: print(step, c)
tf.compat.v1.train.Saver().save(vae.sess, os.path.join(args.out, "model.ckpt"))
losses = np.concatenate([vae.sess.run(vae.per_example, {vae.x: test[i:i + 500]})
                         for i in range(0, 10000, 500)])
fmnist.write_reference(os.path.join(args.out, "reference.json"), losses)
