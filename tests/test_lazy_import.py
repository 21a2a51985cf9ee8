"""`import tfvae` is cheap; its public names are imported on first use."""
import importlib
import os
import subprocess
import sys

from absl.testing import absltest

import tfvae
from tests import util

_HEAVY = ("tensorflow", "tensorflow_probability", "matplotlib",
          "google.protobuf")


class LazyImportTest(absltest.TestCase):

  def test_light_modules_import_nothing_heavy(self):
    code = (
        "import sys\n"
        "import tfvae\n"
        "import tfvae.config, tfvae.kinds, tfvae.errors\n"
        "tfvae.Config().to_dict(); tfvae.TfvaeError; tfvae.config.fields()\n"
        f"print(sorted(m for m in {_HEAVY!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=util.REPO,
                            capture_output=True, text=True, timeout=120)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertEqual(result.stdout.strip(), "[]")

  def test_every_submodule_is_an_attribute_and_importable_from_the_package(
      self):
    package_dir = os.path.dirname(tfvae.__file__)
    names = sorted(f[:-3] for f in os.listdir(package_dir)
                   if f.endswith(".py") and f != "__init__.py")
    for name in names:
      module = importlib.import_module(f"tfvae.{name}")
      self.assertIs(getattr(tfvae, name), module, name)
      namespace = {}
      exec(f"from tfvae import {name}", namespace)  # pylint: disable=exec-used
      self.assertIs(namespace[name], module, name)

  def test_public_names(self):
    for name in tfvae.__all__:
      self.assertTrue(hasattr(tfvae, name), name)
    self.assertIs(tfvae.Config, tfvae.config.Config)
    self.assertIs(tfvae.VAE, tfvae.models.VAE)
    self.assertIs(tfvae.elbo, tfvae.objectives.elbo)
    with self.assertRaises(AttributeError):
      tfvae.no_such_name  # pylint: disable=pointless-statement


if __name__ == "__main__":
  absltest.main()
