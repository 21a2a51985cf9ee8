# Tutorial: the 2017-2018 tf.layers conv VAE of blog posts / TF1 tutorials (conv2d 32/64 k4 s2
# leaky_relu, flatten, dense heads; dense 7x7x64 -> conv2d_transpose x3; sigmoid cross-entropy).
# Saves: Saver().save(sess, OUT/model.ckpt, global_step=global_step) -> model.ckpt-300.*
# Usage: python train.py --out=DIR [--steps=300] [--data_dir=...]; writes reference.json
# (the graph's own mean per-example -ELBO over the 10,000 test images, 1 posterior sample) into DIR.
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
import tensorflow as tf
import fmnist
args = fmnist.parse_args(default_steps=300)
tf.compat.v1.disable_eager_execution()
np.random.seed(0); tf.compat.v1.set_random_seed(0)
layers = tf.compat.v1.layers
latent_dim = 16

def encoder(x):
  with tf.compat.v1.variable_scope("encoder"):
    h = tf.reshape(x, [-1, 28, 28, 1])
    h = layers.conv2d(h, 32, 4, strides=2, padding="same", activation=tf.nn.leaky_relu)
    h = layers.conv2d(h, 64, 4, strides=2, padding="same", activation=tf.nn.leaky_relu)
    h = layers.flatten(h)
    mean = layers.dense(h, latent_dim, name="mean")
    logvar = layers.dense(h, latent_dim, name="logvar")
  return mean, logvar

def decoder(z):
  with tf.compat.v1.variable_scope("decoder"):
    h = layers.dense(z, 7 * 7 * 64, activation=tf.nn.relu)
    h = tf.reshape(h, [-1, 7, 7, 64])
    h = layers.conv2d_transpose(h, 64, 4, strides=2, padding="same", activation=tf.nn.relu)
    h = layers.conv2d_transpose(h, 32, 4, strides=2, padding="same", activation=tf.nn.relu)
    logits = layers.conv2d_transpose(h, 1, 3, strides=1, padding="same")
  return logits

x = tf.compat.v1.placeholder(tf.float32, [None, 784], name="x")
mean, logvar = encoder(x)
eps = tf.random.normal(tf.shape(mean))
z = mean + tf.exp(logvar * 0.5) * eps
logits = decoder(z)
x_img = tf.reshape(x, [-1, 28, 28, 1])
probs = tf.sigmoid(logits, name="probs")
rec = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x_img, logits=logits), [1, 2, 3])
kl = -0.5 * tf.reduce_sum(1 + logvar - tf.square(mean) - tf.exp(logvar), 1)
per_example = rec + kl
loss = tf.reduce_mean(per_example)
global_step = tf.compat.v1.train.get_or_create_global_step()
train_op = tf.compat.v1.train.AdamOptimizer(1e-3).minimize(loss, global_step=global_step)
train, test = fmnist.load("train", args.data_dir), fmnist.load("test", args.data_dir)
it = fmnist.batches(train, 64)
saver = tf.compat.v1.train.Saver()
with tf.compat.v1.Session() as sess:
  sess.run(tf.compat.v1.global_variables_initializer())
  for step in range(args.steps):
    _, l = sess.run((train_op, loss), {x: next(it)})
    if step % 100 == 0: print(step, l)
  saver.save(sess, os.path.join(args.out, "model.ckpt"), global_step=global_step)
  losses = np.concatenate([sess.run(per_example, {x: test[i:i+500]}) for i in range(0, 10000, 500)])
  fmnist.write_reference(os.path.join(args.out, "reference.json"), losses)
