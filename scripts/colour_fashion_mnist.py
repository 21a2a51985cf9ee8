"""Writes a folder of colour images made from Fashion-MNIST, for trying --data.

Each training image is tinted with a random foreground and background colour
(fixed seed), resized to --size x --size and saved as PNG under one
subfolder per class: the pictures in README's "Train on your own images" come
from such a folder.

  python scripts/colour_fashion_mnist.py --out=/tmp/photos --count=6000
  tfvae-train --data=/tmp/photos --run_dir=checkpoints/photos ...
"""
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from tfvae import data

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder to write (one subfolder per class).")
flags.DEFINE_integer("count", 6000, "Number of training images to write.")
flags.DEFINE_integer("size", 36, "Height and width of the written images.")
flags.DEFINE_integer("seed", 0, "Seed of the colours.")
flags.DEFINE_string("data_dir", None, "Where Fashion-MNIST is (see "
                    "tfvae-train --data_dir); default: the usual places.")
flags.mark_flag_as_required("out")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  dataset = data.load("fashion_mnist", FLAGS.data_dir)
  images = dataset.train.images[:FLAGS.count, ..., 0] / 255.0
  rng = np.random.default_rng(FLAGS.seed)
  for i, (grey, label) in enumerate(zip(images, dataset.train.labels)):
    foreground = rng.uniform(0.2, 1.0, 3)
    background = rng.uniform(0.0, 0.35, 3)
    grey = grey[..., np.newaxis]
    colour = grey * foreground + (1 - grey) * background
    picture = Image.fromarray(np.round(colour * 255).astype(np.uint8))
    picture = picture.resize((FLAGS.size, FLAGS.size), Image.BILINEAR)
    folder = os.path.join(FLAGS.out, dataset.class_names[label].replace(
        "/", "_").replace(" ", "_").lower())
    os.makedirs(folder, exist_ok=True)
    picture.save(os.path.join(folder, f"{i:05d}.png"))
  print(f"wrote {len(images)} images to {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
