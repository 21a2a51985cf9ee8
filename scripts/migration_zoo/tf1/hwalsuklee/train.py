# Tutorial: hwalsuklee/tensorflow-mnist-VAE (vae.py, run_main.py): get_variable, elu/tanh,
# dropout keep_prob, one sliced head, 1e-6 + softplus scale, clipped Bernoulli, -(ML - KL).
# Saves: tf.compat.v1.train.Saver().save(sess, OUT/model.ckpt) (no global_step).
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
get_variable = tf.compat.v1.get_variable
w_init_fn = tf.compat.v1.keras.initializers.VarianceScaling if False else None

def gaussian_MLP_encoder(x, n_hidden, n_output, keep_prob):
  with tf.compat.v1.variable_scope("gaussian_MLP_encoder"):
    w_init = tf.compat.v1.initializers.variance_scaling()
    b_init = tf.compat.v1.constant_initializer(0.)
    w0 = get_variable('w0', [x.get_shape()[1], n_hidden], initializer=w_init)
    b0 = get_variable('b0', [n_hidden], initializer=b_init)
    h0 = tf.matmul(x, w0) + b0
    h0 = tf.nn.elu(h0)
    h0 = tf.nn.dropout(h0, rate=1 - keep_prob)
    w1 = get_variable('w1', [h0.get_shape()[1], n_hidden], initializer=w_init)
    b1 = get_variable('b1', [n_hidden], initializer=b_init)
    h1 = tf.matmul(h0, w1) + b1
    h1 = tf.nn.tanh(h1)
    h1 = tf.nn.dropout(h1, rate=1 - keep_prob)
    wo = get_variable('wo', [h1.get_shape()[1], n_output * 2], initializer=w_init)
    bo = get_variable('bo', [n_output * 2], initializer=b_init)
    gaussian_params = tf.matmul(h1, wo) + bo
    mean = gaussian_params[:, :n_output]
    stddev = 1e-6 + tf.nn.softplus(gaussian_params[:, n_output:])
  return mean, stddev

def bernoulli_MLP_decoder(z, n_hidden, n_output, keep_prob, reuse=False):
  with tf.compat.v1.variable_scope("bernoulli_MLP_decoder", reuse=reuse):
    w_init = tf.compat.v1.initializers.variance_scaling()
    b_init = tf.compat.v1.constant_initializer(0.)
    w0 = get_variable('w0', [z.get_shape()[1], n_hidden], initializer=w_init)
    b0 = get_variable('b0', [n_hidden], initializer=b_init)
    h0 = tf.nn.tanh(tf.matmul(z, w0) + b0)
    h0 = tf.nn.dropout(h0, rate=1 - keep_prob)
    w1 = get_variable('w1', [h0.get_shape()[1], n_hidden], initializer=w_init)
    b1 = get_variable('b1', [n_hidden], initializer=b_init)
    h1 = tf.nn.elu(tf.matmul(h0, w1) + b1)
    h1 = tf.nn.dropout(h1, rate=1 - keep_prob)
    wo = get_variable('wo', [h1.get_shape()[1], n_output], initializer=w_init)
    bo = get_variable('bo', [n_output], initializer=b_init)
    y = tf.sigmoid(tf.matmul(h1, wo) + bo)
  return y

def autoencoder(x_hat, x, dim_img, dim_z, n_hidden, keep_prob):
  mu, sigma = gaussian_MLP_encoder(x_hat, n_hidden, dim_z, keep_prob)
  z = mu + sigma * tf.random.normal(tf.shape(mu), 0, 1, dtype=tf.float32)
  y = bernoulli_MLP_decoder(z, n_hidden, dim_img, keep_prob)
  y = tf.clip_by_value(y, 1e-8, 1 - 1e-8)
  marginal_likelihood = tf.reduce_sum(x * tf.math.log(y) + (1 - x) * tf.math.log(1 - y), 1)
  KL_divergence = 0.5 * tf.reduce_sum(tf.square(mu) + tf.square(sigma)
                                      - tf.math.log(1e-8 + tf.square(sigma)) - 1, 1)
  per_example = KL_divergence - marginal_likelihood
  marginal_likelihood = tf.reduce_mean(marginal_likelihood)
  KL_divergence = tf.reduce_mean(KL_divergence)
  ELBO = marginal_likelihood - KL_divergence
  loss = -ELBO
  return y, z, loss, -marginal_likelihood, KL_divergence, per_example

dim_img, dim_z, n_hidden = 784, 20, 500
x_hat = tf.compat.v1.placeholder(tf.float32, shape=[None, dim_img], name='input_img')
x = tf.compat.v1.placeholder(tf.float32, shape=[None, dim_img], name='target_img')
keep_prob = tf.compat.v1.placeholder(tf.float32, name='keep_prob')
y, z, loss, neg_marginal_likelihood, KL_divergence, per_example = autoencoder(
    x_hat, x, dim_img, dim_z, n_hidden, keep_prob)
train_op = tf.compat.v1.train.AdamOptimizer(1e-3).minimize(loss)
train, test = fmnist.load("train", args.data_dir), fmnist.load("test", args.data_dir)
it = fmnist.batches(train, 128)
saver = tf.compat.v1.train.Saver()
with tf.compat.v1.Session() as sess:
  sess.run(tf.compat.v1.global_variables_initializer())
  for step in range(args.steps):
    b = next(it)
    _, l = sess.run((train_op, loss), {x_hat: b, x: b, keep_prob: 0.9})
    if step % 100 == 0: print(step, l)
  saver.save(sess, os.path.join(args.out, "model.ckpt"))
  losses = np.concatenate([sess.run(per_example, {x_hat: test[i:i+500], x: test[i:i+500], keep_prob: 1.0})
                           for i in range(0, 10000, 500)])
  fmnist.write_reference(os.path.join(args.out, "reference.json"), losses)
