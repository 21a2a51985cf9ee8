# Tutorial: the Gaussian-decoder VAE with a learned per-pixel log-variance (two decoder heads),
# GradientDescent.
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
x = tf.compat.v1.placeholder(tf.float32, [None, 784], name="x")
h = layers.dense(x, 256, tf.nn.relu, name="enc1")
z_mu = layers.dense(h, 8, name="z_mu")
z_logvar = layers.dense(h, 8, name="z_logvar")
eps = tf.random.normal(tf.shape(z_mu), name="eps")
z = z_mu + tf.exp(0.5 * z_logvar) * eps
g = layers.dense(z, 256, tf.nn.relu, name="dec1")
x_mu = layers.dense(g, 784, tf.nn.sigmoid, name="x_mu")
x_logvar = layers.dense(g, 784, name="x_logvar")
nll = 0.5 * tf.reduce_sum(np.log(2 * np.pi) + x_logvar + tf.square(x - x_mu) / tf.exp(x_logvar), 1)
kl = -0.5 * tf.reduce_sum(1 + z_logvar - tf.square(z_mu) - tf.exp(z_logvar), 1)
per_example = nll + kl
loss = tf.reduce_mean(per_example)
global_step = tf.compat.v1.train.get_or_create_global_step()
train_op = tf.compat.v1.train.GradientDescentOptimizer(1e-4).minimize(loss, global_step=global_step)
train, test = fmnist.load("train", args.data_dir), fmnist.load("test", args.data_dir)
it = fmnist.batches(train, 100)
saver = tf.compat.v1.train.Saver()
with tf.compat.v1.Session() as sess:
  sess.run(tf.compat.v1.global_variables_initializer())
  for step in range(args.steps):
    _, l = sess.run((train_op, loss), {x: next(it)})
    if step % 100 == 0: print(step, l)
  saver.save(sess, os.path.join(args.out, "model.ckpt"), global_step=global_step)
  losses = np.concatenate([sess.run(per_example, {x: test[i:i+500]}) for i in range(0, 10000, 500)])
  fmnist.write_reference(os.path.join(args.out, "reference.json"), losses)
