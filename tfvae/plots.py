"""Pictures of a trained model, drawn with matplotlib (Agg) into PNG files.

Each `KIND` is a function returning a matplotlib Figure; `save` writes one
atomically. Image grids are drawn pixel for pixel (`Figure.figimage`, each
image pixel a `scale` x `scale` block, tiles separated by white lines), so the
PNG shows the decoded images without resampling.

  manifold         decoded grid over [-span, span]^2 of two latent dims
  latent           posterior means coloured by class
  reconstructions  originals (top row) above their reconstructions
  samples          decoded draws from the prior
  interpolation    decoded points on the line between two images' codes
  curves           train/test ELBO, rate and distortion per epoch
  anomaly          histograms of per-example ELBO, in-distribution vs other,
                   AUROC in the title
  classes          one row of decoded prior samples per class (cvae only)

`projector` is no picture: it writes TensorBoard projector files (posterior
means, sprite, labels; see `tfvae.projector`) into a directory.
"""
import glob
import io
import json
import os

from matplotlib import colormaps
from matplotlib.backends import backend_agg
from matplotlib import figure as figure_lib
import numpy as np
import PIL.Image
import tensorflow as tf

from tfvae import errors
from tfvae import evaluation
from tfvae import files
from tfvae import images as images_lib
from tfvae import projector as projector_lib
from tfvae import runs

KINDS = ("manifold", "latent", "reconstructions", "samples", "interpolation",
         "curves", "anomaly", "classes", "projector")
CURVE_METRICS = ("elbo", "rate", "distortion")
_TITLE_PIXELS = 40
_MARGIN_PIXELS = 8
_ROW_LABEL_PIXELS = 80
_DPI = 100


def new_figure(width, height, **subplots):
  """A Figure of width x height inches drawn by Agg (no pyplot state).

  With `subplots` keyword arguments (e.g. ncols=3), also its axes.
  """
  figure = figure_lib.Figure(figsize=(width, height), dpi=_DPI,
                             facecolor="white")
  backend_agg.FigureCanvasAgg(figure)
  if not subplots:
    return figure
  return figure, figure.subplots(**subplots)


def check_kind(kind):
  """Raises a one-line error unless `kind` is one of `KINDS`."""
  if kind not in KINDS:
    raise errors.TfvaeError(f"--kind={kind}: unknown kind; choose one of "
                            f"{', '.join(KINDS)}")


def save(figure, path):
  """Writes `figure` as a PNG to `path` atomically."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=_DPI)
  picture = PIL.Image.open(buffer).convert("RGB")
  pixels = np.asarray(picture)
  if np.array_equal(pixels[..., 0], pixels[..., 1]) and \
     np.array_equal(pixels[..., 0], pixels[..., 2]):
    # Grey pictures (image grids) take a third of the space as such.
    picture = picture.convert("L")
  with files.atomic_open(path) as f:
    picture.save(f, format="PNG", optimize=True)
  return path


def grid_figure(images, columns, title, scale=2, row_labels=None):
  """A figure showing images [N, H, W, C] in [0, 1] tiled, pixel for pixel.

  Args:
    images: float [N, H, W, C].
    columns: Tiles per row.
    title: Text above the grid.
    scale: Output pixels per image pixel (integer).
    row_labels: Optional text left of each row of tiles.

  Returns:
    A matplotlib Figure.
  """
  picture = images_lib.grid(images, columns=columns, pad=1, pad_value=1.0)
  if picture.shape[-1] == 1:
    picture = np.repeat(picture, 3, axis=-1)
  picture = np.kron(picture, np.ones((scale, scale, 1), np.uint8))
  height, width = picture.shape[:2]
  left = _MARGIN_PIXELS + (_ROW_LABEL_PIXELS if row_labels else 0)
  fig_width = width + left + _MARGIN_PIXELS
  fig_height = height + _TITLE_PIXELS + _MARGIN_PIXELS
  figure = new_figure(fig_width / _DPI, fig_height / _DPI)
  figure.figimage(picture, xo=left, yo=_MARGIN_PIXELS, origin="upper")
  figure.text(0.5, 1 - 0.5 * _TITLE_PIXELS / fig_height, title,
              ha="center", va="center", fontsize=8, wrap=True)
  tile = (np.shape(images)[1] + 1) * scale
  for row, label in enumerate(row_labels or ()):
    centre = _TITLE_PIXELS + row * tile + 0.5 * (tile - scale)
    figure.text((left - 4) / fig_width, 1 - centre / fig_height, str(label),
                ha="right", va="center", fontsize=7)
  return figure


# ----------------------------------------------------------------------------
# Kinds.


def manifold(model, images=None, grid_size=20, span=3.0):
  """Decodes a grid over [-span, span]^2 of two latent dimensions.

  For latent sizes above 2 the two dimensions are those whose posterior
  means vary most over `images`, the others held at the mean of the
  posterior means.

  Args:
    model: A `trained.TrainedModel` opened for scoring (or its
      `NativeModel` or `ExportedModel`).
    images: An `evaluation.Images` (needed when the latent size is above 2).
    grid_size: Points per axis.
    span: Half-width of the grid.

  Returns:
    (figure, dims): the Figure and the two latent dimensions shown.
  """
  latent = model.latent_size
  center = np.zeros(latent)
  if latent == 1:
    dims = (0,)
  elif latent == 2:
    dims = (0, 1)
  else:
    if images is None:
      raise errors.TfvaeError("the manifold of a model with latent size "
                              f"{latent} needs data to pick two dimensions")
    means = posterior_means(model, images)
    variances = evaluation.active_unit_variances(means)
    dims = tuple(int(d) for d in np.argsort(-variances)[:2])
    center = means.mean(axis=0)
  values = np.linspace(-span, span, grid_size)
  if len(dims) == 1:
    z = np.tile(center, [grid_size, 1])
    z[:, dims[0]] = values
    columns = grid_size
  else:
    # Rows run from +span (top) to -span, as on a plotted y axis.
    ys, xs = np.meshgrid(values[::-1], values, indexing="ij")
    z = np.tile(center, [grid_size * grid_size, 1])
    z[:, dims[0]] = xs.ravel()
    z[:, dims[1]] = ys.ravel()
    columns = grid_size
  decoded = model.decode(z.astype(np.float32))["mean"]
  names = " and ".join(f"z[{d}]" for d in dims)
  title = f"Manifold: {names} over [-{span:g}, {span:g}] (x right, y up)"
  if latent > 2:
    title += (f"; the 2 of {latent} dims with the highest variance of "
              "posterior means, others at their mean")
  return grid_figure(decoded, columns, title, scale=1), dims


def posterior_means(model, images, batch_size=500):
  """E_q[z | x] for all images, float [N, D]."""
  return np.concatenate([model.encode(x)[0] for _, x in
                         evaluation.batches(images.images, batch_size)])


def latent(model, images, max_points=5000):
  """Scatter of test-set posterior means coloured by class.

  Dimensions beyond two are projected on the two principal components of the
  means.

  Raises:
    errors.TfvaeError: If `images` has no labels.
  """
  if images.labels is None:
    raise errors.TfvaeError(
        f"--kind=latent colours points by class, but {images.description} "
        "has no labels; use a data set split (--dataset, --split)")
  count = min(len(images.images), max_points)
  subset = evaluation.Images(images.images[:count], images.labels[:count],
                             images.class_names, images.description)
  means = posterior_means(model, subset)
  if means.shape[1] == 1:
    points = np.concatenate([means, np.zeros_like(means)], axis=1)
    axes_names = ("z[0]", "(none)")
    how = "latent size 1"
  elif means.shape[1] == 2:
    points = means
    axes_names = ("z[0]", "z[1]")
    how = "both latent dims"
  else:
    centred = means - means.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    explained = singular[:2]**2 / np.sum(singular**2)
    axes_names = (f"PC 1 ({explained[0]:.0%} of variance)",
                  f"PC 2 ({explained[1]:.0%} of variance)")
    how = f"PCA of {means.shape[1]} latent dims"
  figure, axes = new_figure(7, 6, nrows=1)
  labels = subset.labels
  names = subset.class_names or tuple(str(c) for c in range(labels.max() + 1))
  cmap = colormaps["tab10"]
  for c in np.unique(labels):
    chosen = labels == c
    name = names[c] if c < len(names) else str(c)
    axes.scatter(points[chosen, 0], points[chosen, 1], s=3, alpha=0.6,
                 color=cmap(int(c) % 10), label=name)
  axes.set_xlabel(axes_names[0])
  axes.set_ylabel(axes_names[1])
  axes.set_title(f"Posterior means of {count} images of "
                 f"{subset.description} ({how})")
  axes.legend(markerscale=4, fontsize=7, loc="best")
  figure.tight_layout()
  return figure


def projector(model, images, directory):
  """Writes TensorBoard projector files of the images' posterior means.

  Args:
    model: A `trained.TrainedModel` opened for scoring.
    images: An `evaluation.Images` (labels, where it has them, become the
      metadata).
    directory: The log directory to write into.

  Returns:
    The projector config's path.
  """
  means = posterior_means(model, images)
  return projector_lib.write(directory, means, images.images, images.labels,
                             images.class_names)


def reconstructions(model, images, count=16):
  """Originals (top row) above their reconstructions from E_q[z | x].

  The `count` originals are spread evenly over `images` (`images.spread`),
  so a split listed class by class shows its classes.
  """
  chosen = images_lib.spread(len(images.images), count)
  x = images.images[chosen].astype(np.float32) / 255.0
  recon = model.decode(model.encode(x)[0])["mean"]
  return grid_figure(np.concatenate([x, recon]), len(x),
                     f"{images.description}: originals (top), "
                     "reconstructions from the posterior mean (bottom)")


def samples(model, count=64, seed=0, columns=8):
  """Decoded means of z ~ p(z), one z per seed seed*count .. seed*count+n-1."""
  seeds = np.arange(count, dtype=np.int64) + int(seed) * count
  decoded, _ = model.generate(seeds)
  return grid_figure(decoded, columns,
                     f"{count} samples: means of p(x | z), z ~ N(0, I), "
                     f"seed {seed}")


def classes(generator, count=8, seed=0):
  """One row of decoded prior samples per class of a conditional model.

  Column j of every row decodes the same z (prior seed seed * count + j), so
  a column keeps its style and changes its class.

  Args:
    generator: A conditional `generation.Generator` (a cvae run or export).
    count: Samples per class.
    seed: Seed of the samples.

  Raises:
    errors.TfvaeError: If the model is not conditional.
  """
  if not generator.conditional:
    raise errors.TfvaeError(
        f"--kind=classes: {generator.source} is not a conditional model "
        "(only a cvae draws by class); use --kind=samples")
  seeds = np.arange(count, dtype=np.int64) + int(seed) * count
  rows = [generator.generate(seeds, label)[0]
          for label in range(len(generator.class_names))]
  return grid_figure(np.concatenate(rows), count,
                     f"{count} samples per class: means of p(x | z, y), the "
                     f"same z ~ N(0, I) in each column, seed {seed}",
                     row_labels=generator.class_names)


def interpolation(model, images, steps=10, first=0, second=1):
  """Decodes points on the line between two images' posterior means.

  The row is: image `first`, `steps` decoded points from its code to the
  other's (both ends included), image `second`.
  """
  if max(first, second) >= len(images.images):
    raise errors.TfvaeError(
        f"interpolation between images {first} and {second}, but "
        f"{images.description} has {len(images.images)}")
  x = images.images[[first, second]].astype(np.float32) / 255.0
  codes = model.encode(x)[0]
  t = np.linspace(0.0, 1.0, steps)[:, None]
  z = (1 - t) * codes[0] + t * codes[1]
  decoded = model.decode(z.astype(np.float32))["mean"]
  return grid_figure(np.concatenate([x[:1], decoded, x[1:]]), steps + 2,
                     f"Interpolation between the codes of {images.description}"
                     f" images {first} and {second} (ends: the originals)",
                     scale=3)


def read_scalars(directory):
  """Scalars of the TensorBoard event files in `directory`.

  Returns:
    {tag: [(step, value), ...]} sorted by step; a later value at the same
    step (a resumed run) replaces an earlier one.
  """
  found = {}
  pattern = os.path.join(directory, "events.out.tfevents*")
  for path in sorted(glob.glob(pattern)):
    try:
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
          if value.HasField("simple_value"):
            number = value.simple_value
          elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
            number = float(tf.make_ndarray(value.tensor))
          else:
            continue
          found.setdefault(value.tag, {})[int(event.step)] = float(number)
    except tf.errors.DataLossError:
      # The tail of a file a killed run was writing.
      continue
  return {tag: sorted(by_step.items()) for tag, by_step in found.items()}


def _steps_per_epoch(run_dir):
  """Steps per epoch from the run's metrics.jsonl, or None."""
  path = runs.metrics_path(run_dir)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if record.get("epoch") and record.get("step"):
        return record["step"] / record["epoch"]
  return None


def curves(run_dir):
  """Train and test ELBO, rate and distortion per epoch, one panel each.

  Reads the scalars train_<m> from RUN_DIR/summaries/train and test_<m> from
  RUN_DIR/summaries/eval.

  Raises:
    errors.TfvaeError: If `run_dir` is not a run directory or has no
      summaries.
  """
  if run_dir is None or not runs.is_run_dir(run_dir):
    raise errors.TfvaeError(
        "--kind=curves reads a run's TensorBoard summaries; --model must be "
        "a run directory")
  train = read_scalars(runs.summaries_dir(run_dir, "train"))
  test = read_scalars(runs.summaries_dir(run_dir, "eval"))
  if not any(f"train_{m}" in train or f"test_{m}" in test
             for m in CURVE_METRICS):
    raise errors.TfvaeError(
        f"{os.path.join(run_dir, runs.SUMMARIES)}: no train_elbo/test_elbo "
        "scalars in the event files (has the run finished an epoch?)")
  per_epoch = _steps_per_epoch(run_dir)
  figure, all_axes = new_figure(4 * len(CURVE_METRICS), 3.5,
                                ncols=len(CURVE_METRICS))
  for axes, metric in zip(all_axes, CURVE_METRICS):
    for name, scalars, style in ((f"train_{metric}", train, "-o"),
                                 (f"test_{metric}", test, "-s")):
      if name not in scalars:
        continue
      steps, values = zip(*scalars[name])
      xs = np.asarray(steps, np.float64)
      if per_epoch:
        xs = xs / per_epoch
      axes.plot(xs, values, style, markersize=3, label=name.split("_")[0])
    axes.set_title(f"{metric} (nats)")
    axes.set_xlabel("epoch" if per_epoch else "step")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
  figure.suptitle(f"Learning curves of {os.path.basename(run_dir.rstrip('/'))}"
                  , fontsize=10)
  figure.tight_layout()
  return figure


def auroc(negatives, positives):
  """Area under the ROC curve of scores: P(pos > neg) + P(pos = neg) / 2.

  The Mann-Whitney U statistic divided by n_neg * n_pos, from average ranks
  (ties share their mean rank).

  Args:
    negatives: float [n], scores of in-distribution examples.
    positives: float [m], scores of the other (anomalous) examples.
  """
  negatives = np.asarray(negatives, np.float64).ravel()
  positives = np.asarray(positives, np.float64).ravel()
  if not len(negatives) or not len(positives):
    raise ValueError("auroc needs scores of both groups")
  scores = np.concatenate([negatives, positives])
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(len(scores))
  start = 0
  while start < len(scores):
    end = start
    while (end + 1 < len(scores)
           and sorted_scores[end + 1] == sorted_scores[start]):
      end += 1
    ranks[order[start:end + 1]] = 0.5 * (start + end) + 1
    start = end + 1
  positive_rank_sum = ranks[len(negatives):].sum()
  u = positive_rank_sum - len(positives) * (len(positives) + 1) / 2
  return float(u / (len(negatives) * len(positives)))


def per_example_elbo(model, images, seed=0, batch_size=500):
  """ELBO of each image (one sample of z each), float [N]."""
  return np.concatenate([
      model.elbo(x, seed, index)[0]
      for index, x in evaluation.batches(images.images, batch_size)])


def anomaly(model, inliers, outliers, seed=0):
  """Histograms of per-example ELBO of in-distribution and other images.

  The anomaly score is -ELBO; the AUROC says how well it separates the other
  images (positives) from the in-distribution ones.

  Returns:
    (figure, auroc).
  """
  evaluation.check_image_shape(model, outliers)
  inlier_elbo = per_example_elbo(model, inliers, seed)
  outlier_elbo = per_example_elbo(model, outliers, seed)
  area = auroc(-inlier_elbo, -outlier_elbo)
  figure, axes = new_figure(7, 4, nrows=1)
  both = np.concatenate([inlier_elbo, outlier_elbo])
  both = both[np.isfinite(both)]
  bins = np.linspace(both.min(), both.max(), 60)
  axes.hist(np.clip(inlier_elbo, bins[0], bins[-1]), bins=bins, alpha=0.6,
            label=f"{inliers.description} ({len(inlier_elbo)})")
  axes.hist(np.clip(outlier_elbo, bins[0], bins[-1]), bins=bins, alpha=0.6,
            label=f"{outliers.description} ({len(outlier_elbo)})")
  axes.set_xlabel("ELBO (nats)")
  axes.set_ylabel("images")
  axes.set_title(f"Per-example ELBO; AUROC of -ELBO as anomaly score: "
                 f"{area:.4f}", fontsize=10)
  axes.legend(fontsize=8)
  figure.tight_layout()
  return figure, area


def noise_images(count, image_shape, seed):
  """Uniform noise images, uint8 [count, H, W, C]."""
  return np.random.default_rng(seed).integers(
      0, 256, size=(count, *image_shape), dtype=np.uint8)

