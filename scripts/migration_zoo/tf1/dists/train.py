# Tutorial: the tf.distributions (TFP-era) VAE: Normal(loc, softplus), Bernoulli(logits),
# kl_divergence, -mean(elbo), RMSProp decay 0.9.
# Saves: Saver().save(sess, OUT/model.ckpt, global_step=global_step) -> model.ckpt-400.*
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
layers = tf.compat.v1.layers
tfd = tf.compat.v1.distributions

def make_encoder(x, code_size):
  h = layers.dense(x, 200, tf.nn.relu)
  h = layers.dense(h, 200, tf.nn.relu)
  loc = layers.dense(h, code_size)
  scale = layers.dense(h, code_size, tf.nn.softplus)
  return tfd.Normal(loc, scale)

def make_decoder(code):
  h = layers.dense(code, 200, tf.nn.relu)
  h = layers.dense(h, 200, tf.nn.relu)
  logits = layers.dense(h, 784)
  return tfd.Bernoulli(logits=logits)

x = tf.compat.v1.placeholder(tf.float32, [None, 784])
with tf.compat.v1.variable_scope("encoder"):
  posterior = make_encoder(x, 10)
prior = tfd.Normal(tf.zeros(10), tf.ones(10))
code = posterior.sample()
with tf.compat.v1.variable_scope("decoder"):
  likelihood = make_decoder(code)
log_prob = tf.reduce_sum(likelihood.log_prob(x), 1)
divergence = tf.reduce_sum(tfd.kl_divergence(posterior, prior), 1)
elbo = log_prob - divergence
loss = -tf.reduce_mean(elbo)
global_step = tf.compat.v1.train.get_or_create_global_step()
train_op = tf.compat.v1.train.RMSPropOptimizer(0.001, decay=0.9).minimize(loss, global_step=global_step)
train, test = fmnist.load("train", args.data_dir), fmnist.load("test", args.data_dir)
it = fmnist.batches(train, 100)
saver = tf.compat.v1.train.Saver()
with tf.compat.v1.Session() as sess:
  sess.run(tf.compat.v1.global_variables_initializer())
  for step in range(args.steps):
    _, l = sess.run((train_op, loss), {x: next(it)})
    if step % 100 == 0: print(step, l)
  saver.save(sess, os.path.join(args.out, "model.ckpt"), global_step=global_step)
  losses = -np.concatenate([sess.run(elbo, {x: test[i:i+500]}) for i in range(0, 10000, 500)])
  fmnist.write_reference(os.path.join(args.out, "reference.json"), losses)
