"""Training on your own images: folders, list files, arrays, TFRecords."""
import json
import os

from absl.testing import parameterized
import numpy as np
import PIL.Image
import tensorflow as tf

from tests import util
from tfvae import config as config_lib
from tfvae import data
from tfvae import distribute
from tfvae import errors
from tfvae import image_sources
from tfvae import input_pipeline
from tfvae import launch
from tfvae import nets


def _colourise(images, size):
  """Fashion-MNIST uint8 [N, 28, 28, 1] as [N, size, size, 3], tinted."""
  resized = tf.image.resize(images, (size, size)).numpy()
  tint = np.array([1.0, 0.7, 0.4])
  return np.clip(np.round(resized * tint), 0, 255).astype(np.uint8)


def _write(path, image, fmt="png"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if fmt == "png":
    tf.io.write_file(path, tf.io.encode_png(image))
  elif fmt == "jpeg":
    tf.io.write_file(path, tf.io.encode_jpeg(image, quality=95))
  else:
    picture = PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1
                                  else image)
    picture.save(path, format=fmt.upper())


def _write_folder(directory, images, labels, fmt="png"):
  """One subdirectory per class, files named by index; returns the images
  and labels in the order a folder is read (class, then file name)."""
  ext = {"png": "png", "jpeg": "jpg", "bmp": "bmp", "gif": "gif"}[fmt]
  for i, (image, label) in enumerate(zip(images, labels)):
    _write(os.path.join(directory, f"class_{label}", f"{i:04d}.{ext}"), image,
           fmt)
  order = np.lexsort((np.arange(len(labels)), labels))
  return images[order], labels[order]


class ImageSourcesTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    small = util.small_fashion_mnist(num_train=48, num_test=16)
    cls.grey = small.train.images
    cls.labels = small.train.labels
    cls.test_grey = small.test.images
    cls.test_labels = small.test.labels
    cls.colour32 = _colourise(cls.grey, 32)
    cls.test_colour32 = _colourise(cls.test_grey, 32)

  def _dir(self):
    return self.create_tempdir().full_path

  @parameterized.named_parameters(("grey", "grey"), ("colour", "colour32"))
  def test_folder_reads_back_exactly(self, which):
    images = getattr(self, which)
    test_images = getattr(self, "test_" + which)
    root = self._dir()
    expected, expected_labels = _write_folder(os.path.join(root, "train"),
                                              images, self.labels)
    expected_test, expected_test_labels = _write_folder(
        os.path.join(root, "test"), test_images, self.test_labels)
    dataset = image_sources.load(os.path.join(root, "train"),
                                 os.path.join(root, "test"))
    self.assertAllEqual(dataset.train.images, expected)
    self.assertAllEqual(dataset.train.labels, expected_labels)
    self.assertAllEqual(dataset.test.images, expected_test)
    self.assertAllEqual(dataset.test.labels, expected_test_labels)
    self.assertEqual(dataset.class_names,
                     tuple(f"class_{c}" for c in sorted(set(self.labels))))

  def test_list_file_keeps_its_order_and_labels(self):
    root = self._dir()
    order = np.random.default_rng(3).permutation(len(self.labels))
    lines = []
    for i in order:
      _write(os.path.join(root, "pics", f"{i}.png"), self.colour32[i])
      lines.append(f"pics/{i}.png {self.labels[i]}")
    listing = os.path.join(root, "train_labels.txt")
    with open(listing, "w") as f:
      f.write("# path label\n\n" + "\n".join(lines) + "\n")
    dataset = image_sources.load(listing, test_fraction=0.25)
    train_index, test_index = image_sources.held_out(len(order), 0.25)
    self.assertLen(test_index, 12)
    self.assertEmpty(np.intersect1d(train_index, test_index))
    self.assertAllEqual(dataset.train.images,
                        self.colour32[order][train_index])
    self.assertAllEqual(dataset.test.labels, self.labels[order][test_index])
    # Without labels: the same images, labels 0, one "class".
    with open(listing, "w") as f:
      f.write("\n".join(line.split()[0] for line in lines) + "\n")
    unlabelled = image_sources.load(listing, test_fraction=0.25)
    self.assertAllEqual(unlabelled.train.images, dataset.train.images)
    self.assertEqual(unlabelled.class_names, image_sources.UNLABELLED)

  def test_jpeg_bmp_and_gif_decode(self):
    root = self._dir()
    jpeg, _ = _write_folder(os.path.join(root, "jpeg"), self.colour32,
                            self.labels, "jpeg")
    read = image_sources.load(os.path.join(root, "jpeg"),
                              os.path.join(root, "jpeg"))
    error = np.abs(read.test.images.astype(float) - jpeg.astype(float))
    self.assertLess(error.mean(), 6.0)  # JPEG's loss at quality 95
    self.assertGreater(error.mean(), 0.0)
    files = sorted(os.path.join(d, f) for d, _, names in
                   os.walk(os.path.join(root, "jpeg")) for f in names)
    by_pil = np.stack([np.asarray(PIL.Image.open(f).convert("RGB"))
                       for f in files])
    self.assertAllClose(read.test.images, by_pil, atol=3)
    for fmt in ("bmp", "gif"):
      images = np.repeat(self.grey[:4], 3, axis=-1)
      expected, _ = _write_folder(os.path.join(root, fmt), images,
                                  np.zeros(4, np.int64), fmt)
      read = image_sources.load(os.path.join(root, fmt),
                                os.path.join(root, fmt))
      # GIF stores a palette: grey levels survive it exactly.
      self.assertAllEqual(read.test.images, expected, msg=fmt)

  def test_arrays(self):
    root = self._dir()
    path = os.path.join(root, "colour.npz")
    np.savez(path, images=self.colour32.astype(np.float32) / 255.0,
             labels=self.labels)
    dataset = image_sources.load(path, test_fraction=0.25)
    train_index, _ = image_sources.held_out(len(self.labels), 0.25)
    self.assertAllEqual(dataset.train.images, self.colour32[train_index])
    self.assertAllEqual(dataset.train.labels, self.labels[train_index])
    keras = os.path.join(root, "keras.npz")
    np.savez(keras, x_train=self.grey[..., 0], y_train=self.labels,
             x_test=self.test_grey[..., 0], y_test=self.test_labels)
    dataset = image_sources.load(keras)
    self.assertAllEqual(dataset.test.images, self.test_grey)
    npy = os.path.join(root, "images.npy")
    np.save(npy, self.grey)
    self.assertAllEqual(
        image_sources.load(npy, test_fraction=0.25).train.images,
        self.grey[train_index])
    np.save(npy, self.grey.astype(np.float32))  # floats beyond [0, 1]
    with self.assertRaisesRegex(errors.DataError, r"images.npy.*\[0, 1\]"):
      image_sources.load(npy)

  def test_tfrecords_read_back_the_folder(self):
    root = self._dir()
    _write_folder(os.path.join(root, "train"), self.colour32, self.labels)
    folder = image_sources.load(os.path.join(root, "train"))
    prefix = os.path.join(root, "records", "train")
    paths = image_sources.write_tfrecords(os.path.join(root, "train"), prefix,
                                          num_shards=3)
    self.assertEqual([os.path.basename(p) for p in paths],
                     [f"train-0000{i}-of-00003" for i in range(3)])
    records = image_sources.load(prefix)
    self.assertAllEqual(records.train.images, folder.train.images)
    self.assertAllEqual(records.test.labels, folder.test.labels)
    self.assertEqual(records.class_names, folder.class_names)
    self.assertEqual(image_sources.class_names_of(prefix), folder.class_names)

  def test_bad_image_is_named_or_skipped(self):
    root = self._dir()
    directory = os.path.join(root, "pics")
    _write_folder(directory, self.grey[:10], np.zeros(10, np.int64))
    bad = os.path.join(directory, "class_0", "0003.png")
    with open(bad, "wb") as f:
      f.write(b"\x89PNG\r\n\x1a\n truncated")
    with self.assertRaisesRegex(errors.DataError,
                                rf"^{bad}: not a readable image .*"
                                "--skip_bad_images"):
      image_sources.load(directory, test_fraction=0.2)
    dataset = image_sources.load(directory, test_fraction=0.2, skip_bad=True)
    self.assertLen(dataset.train.images, 7)
    self.assertLen(dataset.test.images, 2)
    prefix = os.path.join(root, "rec")
    paths = image_sources.write_tfrecords(directory, prefix, num_shards=2,
                                          skip_bad=True)
    self.assertLen(image_sources.load(prefix, test_fraction=0.2).train.images,
                   7)
    with open(paths[1], "r+b") as f:
      f.truncate(os.path.getsize(paths[1]) - 10)
    with self.assertRaisesRegex(errors.DataError,
                                rf"^{paths[1]}: damaged TFRecord file"):
      image_sources.load(prefix, test_fraction=0.2)

  def test_a_cvae_needs_labels(self):
    root = self._dir()
    for i in range(4):
      _write(os.path.join(root, "flat", f"{i}.png"), self.grey[i])
    config = config_lib.Config(data=os.path.join(root, "flat"), model="cvae",
                               test_fraction=0.25)
    with self.assertRaisesRegex(errors.DataError, "needs class labels"):
      launch.run(config, os.path.join(root, "run"))

  def test_sizes_and_channels(self):
    root = self._dir()
    directory = os.path.join(root, "mixed")
    _write(os.path.join(directory, "a.png"), self.colour32[0])
    _write(os.path.join(directory, "b.png"), self.grey[1])
    with self.assertRaisesRegex(errors.DataError, "--image_size"):
      image_sources.load(directory, test_fraction=0.5)
    dataset = image_sources.load(directory, test_fraction=0.5,
                                 image_size=(16, 16))
    self.assertEqual(dataset.image_shape, (16, 16, 3))
    dataset = image_sources.load(directory, test_fraction=0.5,
                                 image_size=(28, 28), channels=1)
    self.assertEqual(dataset.image_shape, (28, 28, 1))
    both = np.concatenate([dataset.train.images, dataset.test.images])
    # The grey image is 28 x 28 already: kept exactly.
    self.assertTrue(any(np.array_equal(image, self.grey[1])
                        for image in both))

  def test_fit_size_against_block_means_and_centre_crop(self):
    image = np.random.default_rng(0).integers(0, 256, (8, 12, 3), np.uint8)
    halved = image_sources.fit_size(image, (4, 6))
    blocks = image.reshape(4, 2, 6, 2, 3).astype(float).mean(axis=(1, 3))
    self.assertAllClose(halved, np.round(blocks), atol=1)
    tall = np.random.default_rng(1).integers(0, 256, (40, 20, 1), np.uint8)
    self.assertAllEqual(image_sources.fit_size(tall, (20, 20)), tall[10:30])
    grey = image_sources.convert_channels(image, 1)
    luma = image.astype(float) @ [0.299, 0.587, 0.114]
    self.assertAllClose(grey[..., 0], np.round(luma), atol=1)

  @parameterized.parameters((32, 32, 3, (8, 16)), (64, 64, 3, (8, 16, 16)),
                            (37, 23, 1, (4, 8, 8)), (5, 9, 3, (4,)))
  def test_conv_stack_returns_the_image_size(self, height, width, channels,
                                             conv_channels):
    shape = (height, width, channels)
    encoder = nets.encoder_net("conv", shape, 6, conv_channels=conv_channels)
    decoder = nets.decoder_net("conv", 3, (height, width, 2 * channels),
                               conv_channels=conv_channels)
    self.assertEqual(encoder(tf.zeros([2, *shape])).shape, (2, 6))
    self.assertEqual(decoder(tf.zeros([2, 3])).shape,
                     (2, height, width, 2 * channels))
    self.assertLen(encoder.convs, len(conv_channels))


class StreamingTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    small = util.small_fashion_mnist(num_train=60, num_test=0)
    cls.root = tf.compat.v1.test.get_temp_dir()
    cls.folder = os.path.join(cls.root, "stream_pics")
    _write_folder(cls.folder, _colourise(small.train.images, 16),
                  small.train.labels)
    cls.prefix = os.path.join(cls.root, "stream_records", "pics")
    image_sources.write_tfrecords(cls.folder, cls.prefix, num_shards=3)
    cls.cached = image_sources.load(cls.folder)

  def test_streamed_images_are_the_cached_ones(self):
    for source in (self.folder, self.prefix):
      streamed = image_sources.load(source, cache_mb=0.001)
      self.assertIsInstance(streamed.train.images,
                            image_sources.StreamedImages)
      self.assertIsInstance(streamed.test.images, np.ndarray)
      self.assertAllEqual(streamed.train.images[:], self.cached.train.images)
      self.assertAllEqual(streamed.train.labels, self.cached.train.labels)
      self.assertEqual(data.fingerprint(streamed),
                       data.fingerprint(self.cached))

  def test_streamed_folder_epoch_is_the_cached_epoch(self):
    streamed = image_sources.load(self.folder, cache_mb=0.001)
    for skip in (0, 2):
      got = list(input_pipeline.train_dataset(
          streamed.train, 8, seed=3, epoch=1, skip_batches=skip))
      want = list(input_pipeline.train_dataset(
          self.cached.train, 8, seed=3, epoch=1, skip_batches=skip))
      self.assertLen(got, len(want))
      for a, b in zip(got, want):
        self.assertAllEqual(a["image"], b["image"])
        self.assertAllEqual(a["label"], b["label"])

  def test_workers_decode_their_own_slices_of_a_streamed_folder(self):
    streamed = image_sources.load(self.folder, cache_mb=0.001)
    for first_replica in (0, 1):
      got = list(distribute.replica_batches(streamed.train, 8, 3, 1, 1,
                                            first_replica, 1, 2))
      want = list(distribute.replica_batches(self.cached.train, 8, 3, 1, 1,
                                             first_replica, 1, 2))
      self.assertLen(got, len(want))
      for a, b in zip(got, want):
        self.assertAllEqual(a["image"], b["image"])
        self.assertAllEqual(a["label"], b["label"])

  def test_workers_split_streamed_tfrecords_by_file(self):
    streamed = image_sources.load(self.prefix, cache_mb=0.001)
    cached = self.cached.train
    train_index, _ = image_sources.held_out(60, 0.1)
    index_of = {cached.images[p].tobytes(): (train_index[p], cached.labels[p])
                for p in range(len(cached.labels))}
    shard_of = lambda i: i * 3 // 60  # 3 shards of 20 records
    num_batches = input_pipeline.steps_per_epoch(cached, 8)
    for worker, shards in ((0, {0, 2}), (1, {1})):
      batches = list(distribute.replica_batches(streamed.train, 8, 3, 1, 0,
                                                worker, 1, 2))
      self.assertLen(batches, num_batches)
      for batch in batches:
        self.assertEqual(batch["image"].shape, (4, 16, 16, 3))
        for image, label in zip(batch["image"].numpy(),
                                batch["label"].numpy()):
          index, want = index_of[image.tobytes()]
          self.assertEqual(label, want)
          self.assertIn(shard_of(index), shards)
      resumed = list(distribute.replica_batches(streamed.train, 8, 3, 1, 2,
                                                worker, 1, 2))
      self.assertLen(resumed, num_batches - 2)
      for a, b in zip(resumed, batches[2:]):
        self.assertAllEqual(a["image"], b["image"])
    with self.assertRaisesRegex(errors.DataError, "3 TFRecord shard"):
      distribute.replica_batches(streamed.train, 8, 3, 1, 0, 0, 1, 4)

  def test_streamed_tfrecords_keep_labels_with_images_and_resume(self):
    streamed = image_sources.load(self.prefix, cache_mb=0.001)
    cached = self.cached.train
    label_of = {cached.images[i].tobytes(): cached.labels[i]
                for i in range(len(cached.labels))}
    full = list(input_pipeline.train_dataset(streamed.train, 8, 5, 2))
    seen = []
    for batch in full:
      for image, label in zip(batch["image"].numpy(), batch["label"].numpy()):
        self.assertEqual(label_of[image.tobytes()], label)
        seen.append(image.tobytes())
    self.assertLen(set(seen), len(seen))
    resumed = list(input_pipeline.train_dataset(streamed.train, 8, 5, 2,
                                                skip_batches=3))
    self.assertLen(resumed, len(full) - 3)
    for a, b in zip(resumed, full[3:]):
      self.assertAllEqual(a["image"], b["image"])
    other_epoch = list(input_pipeline.train_dataset(streamed.train, 8, 5, 3))
    self.assertNotAllEqual(other_epoch[0]["image"], full[0]["image"])

  def test_streamed_run_is_the_cached_run(self):
    results = []
    for i, cache_mb in enumerate((1024, 0.001)):
      dataset = image_sources.load(self.folder, cache_mb=cache_mb)
      config = config_lib.Config(
          data=self.folder, network="mlp", hidden_sizes=(16,), latent_dim=2,
          batch_size=8, epochs=1, log_every_steps=1000)
      run_dir = os.path.join(self.create_tempdir().full_path, f"run_{i}")
      _, records = launch.run(config, run_dir, dataset=dataset)
      results.append(records[-1])
    for key in ("train_loss", "test_elbo"):
      self.assertEqual(results[0][key], results[1][key], key)


class TrainOnImagesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("32", 32, 128), ("64", 64, 64))
  def test_conv_vae_on_colour_images_improves_in_an_epoch(self, size, count):
    root = self.create_tempdir().full_path
    small = util.small_fashion_mnist(num_train=count, num_test=0)
    folder = os.path.join(root, "pics")
    _write_folder(folder, _colourise(small.train.images, size),
                  small.train.labels, "jpeg")
    config = config_lib.Config(
        data=folder, test_fraction=0.25, network="conv", latent_dim=4,
        conv_channels=(8, 16), likelihood="continuous_bernoulli",
        batch_size=16, epochs=1, learning_rate=3e-3, log_every_steps=1000)
    dataset = image_sources.load_for(config)
    config = config.replace(image_shape=dataset.image_shape)
    run_dir = os.path.join(root, "run")
    strategy = tf.distribute.get_strategy()
    trainer = launch.build_trainer(config, run_dir, dataset, strategy)
    before = trainer.evaluate()["test_elbo"]
    trainer.train()
    after = trainer.evaluate()["test_elbo"]
    self.assertEqual(dataset.image_shape, (size, size, 3))
    self.assertGreater(after, before)
    sample = trainer.model.decoder(tf.zeros([2, 4])).mean()
    self.assertEqual(sample.shape, (2, size, size, 3))

  def test_folder_and_its_tfrecords_give_the_same_run(self):
    root = self.create_tempdir().full_path
    small = util.small_fashion_mnist(num_train=96, num_test=0)
    folder = os.path.join(root, "pics")
    _write_folder(folder, _colourise(small.train.images, 20),
                  small.train.labels)
    prefix = os.path.join(root, "records", "pics")
    image_sources.write_tfrecords(folder, prefix, num_shards=2)
    results = []
    for i, source in enumerate((folder, prefix)):
      config = config_lib.Config(
          data=source, network="mlp", hidden_sizes=(32,), latent_dim=2,
          batch_size=16, epochs=1, log_every_steps=1000)
      run_dir = os.path.join(root, f"run_{i}")
      _, records = launch.run(config, run_dir)
      results.append(records[-1])
      with open(os.path.join(run_dir, "config.json")) as f:
        self.assertEqual(json.load(f)["image_shape"], [20, 20, 3])
    for key in ("train_loss", "test_elbo"):
      self.assertEqual(results[0][key], results[1][key], key)


class ImagesCliTest(tf.test.TestCase):

  def test_train_plot_export_with_only_data_flags(self):
    root = self.create_tempdir().full_path
    small = util.small_fashion_mnist(num_train=64, num_test=0)
    folder = os.path.join(root, "pics")
    _write_folder(folder, _colourise(small.train.images, 24)[:, :, 2:22],
                  small.train.labels)
    run_dir = os.path.join(root, "run")
    result = util.run_tool("tools.train", f"--data={folder}",
                           f"--run_dir={run_dir}", "--epochs=1",
                           "--hidden_sizes=16", "--batch_size=16")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    out = os.path.join(root, "recon.png")
    result = util.run_tool("tools.plot", f"--model={run_dir}",
                           "--kind=reconstructions", f"--out={out}")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    picture = np.asarray(PIL.Image.open(out))
    self.assertEqual(picture.ndim, 3)  # colour
    export_dir = os.path.join(root, "export")
    result = util.run_tool("tools.export", f"--run_dir={run_dir}",
                           f"--export_dir={export_dir}")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    loaded = tf.saved_model.load(os.path.join(export_dir, "1"))
    mean = loaded.signatures["decode"](z=tf.zeros([3, 2]))["mean"]
    self.assertEqual(mean.shape, (3, 24, 20, 3))
    bad = os.path.join(root, "nothing_here")
    result = util.run_tool("tools.train", f"--data={bad}",
                           f"--run_dir={run_dir}_2")
    self.assertEqual(result.returncode, 1)
    self.assertIn(f"--data={bad}: no such file", result.stderr)
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  tf.test.main()
