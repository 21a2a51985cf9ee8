"""TensorBoard projector files of a model's latent embeddings.

`write(directory, ...)` writes, atomically each:

  embeddings.tsv          posterior means [N, D], one row per image, tab
                          separated (the projector's `tensor_path` format)
  metadata.tsv            a header "label<TAB>class", then one row per image
  sprite.png              the images tiled row by row, ceil(sqrt(N)) per row,
                          no padding (the projector's sprite)
  projector_config.pbtxt  a `ProjectorConfig` naming the three

TensorBoard finds a projector config in the log directory itself or in a
run's plugin assets (RUN/`ASSETS_DIR`). Training writes into the eval
summaries' assets (RUN_DIR/summaries/eval/plugins/
org_tensorflow_tensorboard_projector/, see
`run_outputs.write_projector`), so `tensorboard --logdir RUN_DIR` shows them
under the run summaries/eval; `tfvae-plot --kind=projector --out=DIR` writes
into DIR, shown by `tensorboard --logdir DIR`.
"""
import io
import math
import os

from google.protobuf import text_format
import numpy as np
import PIL.Image
import tensorflow as tf
from tensorboard.plugins.projector import metadata as projector_metadata
from tensorboard.plugins.projector import projector_config_pb2

from tfvae import errors
from tfvae import files
from tfvae import models

CONFIG_FILE = "projector_config.pbtxt"
TENSORS_FILE = "embeddings.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
TENSOR_NAME = "posterior_means"
# A run's plugin assets directory for the projector:
# plugins/org_tensorflow_tensorboard_projector.
ASSETS_DIR = os.path.join(projector_metadata.PLUGINS_DIR,
                          projector_metadata.PLUGIN_ASSETS_NAME)
# The projector's sprites are at most 8192 x 8192 pixels.
MAX_SPRITE_PIXELS = 8192


def posterior_means(model, images, labels=None, batch_size=500):
  """E_q[z | x] of an in-process model (the code of an autoencoder).

  Args:
    model: A model built by `kinds.build_model`.
    images: float32 [N, H, W, C] in [0, 1].
    labels: int [N] (conditional models only).

  Returns:
    float32 numpy [N, D].
  """
  means = []
  for start in range(0, len(images), batch_size):
    x = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
    if not models.can_generate(model):
      means.append(model.encode(x).numpy())
    elif models.is_conditional(model):
      means.append(model.approx_posterior(
          x, tf.convert_to_tensor(labels[start:start + len(x)])).mean()
                   .numpy())
    else:
      means.append(model.approx_posterior(x).mean().numpy())
  return np.concatenate(means).astype(np.float32)


def sprite(images):
  """The images uint8 [N, H, W, C] tiled ceil(sqrt(N)) per row, no padding.

  Returns:
    uint8 [rows * H, columns * W, C]; cells after the last image are black.
  """
  count, height, width, channels = images.shape
  columns = max(1, math.ceil(math.sqrt(count)))
  rows = math.ceil(count / columns)
  if max(rows * height, columns * width) > MAX_SPRITE_PIXELS:
    raise errors.TfvaeError(
        f"{count} images of {height}x{width} make a sprite over "
        f"{MAX_SPRITE_PIXELS} pixels wide, TensorBoard's limit; use fewer")
  picture = np.zeros([rows * height, columns * width, channels], np.uint8)
  for i in range(count):
    r, c = divmod(i, columns)
    picture[r * height:(r + 1) * height, c * width:(c + 1) * width] = \
        images[i]
  return picture


def write(directory, means, images, labels=None, class_names=None,
          tensor_name=TENSOR_NAME):
  """Writes the projector files of `means` into `directory`.

  Args:
    directory: Where to write (created if missing).
    means: float [N, D] embeddings.
    images: uint8 [N, H, W, C] shown as the sprite.
    labels: int [N], or None (the metadata then has no label column).
    class_names: Names of the labels, or None.
    tensor_name: The embedding's name in TensorBoard.

  Returns:
    The config file's path.
  """
  means = np.asarray(means, np.float32)
  images = np.asarray(images, np.uint8)
  if len(means) != len(images) or (labels is not None
                                   and len(labels) != len(means)):
    raise ValueError(f"{len(means)} embeddings for {len(images)} images")
  os.makedirs(directory, exist_ok=True)
  picture = sprite(images)
  with files.atomic_open(os.path.join(directory, TENSORS_FILE), "w") as f:
    for row in means:
      # %.9g: a float32 reads back exactly.
      f.write("\t".join(f"{v:.9g}" for v in row) + "\n")
  with files.atomic_open(os.path.join(directory, METADATA_FILE), "w") as f:
    f.write("label\tclass\n")
    for i in range(len(means)):
      if labels is None:
        f.write("none\tnone\n")
        continue
      label = int(labels[i])
      name = (class_names[label] if class_names and label < len(class_names)
              else str(label))
      f.write(f"{label}\t{name}\n")
  buffer = io.BytesIO()
  PIL.Image.fromarray(picture[..., 0] if picture.shape[-1] == 1
                      else picture).save(buffer, format="PNG")
  with files.atomic_open(os.path.join(directory, SPRITE_FILE)) as f:
    f.write(buffer.getvalue())
  config = projector_config_pb2.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = tensor_name
  embedding.tensor_path = TENSORS_FILE
  embedding.metadata_path = METADATA_FILE
  embedding.sprite.image_path = SPRITE_FILE
  embedding.sprite.single_image_dim.extend([images.shape[2],
                                            images.shape[1]])
  path = os.path.join(directory, CONFIG_FILE)
  with files.atomic_open(path, "w") as f:
    f.write(text_format.MessageToString(config))
  return path
