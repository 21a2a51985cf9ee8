"""Every installed tfvae-* program's --help lists its own flags."""
import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from tests import util


def _console_scripts():
  """{program: module} of setup.py's CONSOLE_SCRIPTS, read without running it.

  setup.py calls setuptools.setup() when imported, so its list is parsed.
  """
  with open(os.path.join(util.REPO, "setup.py")) as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if (isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "CONSOLE_SCRIPTS"
                for t in node.targets)):
      entries = ast.literal_eval(node.value)
      return {name: target.split(":")[0] for name, target in
              (entry.split("=") for entry in entries)}
  raise AssertionError("setup.py has no CONSOLE_SCRIPTS")


# Runs an installed script's --help as its own __main__ would, then reports
# what the program's module defines and whether TensorFlow got imported.
_DRIVER = r"""
import json, runpy, sys
script, module = sys.argv[1:]
sys.argv = [script, "--help"]
try:
  runpy.run_path(script, run_name="__main__")
except SystemExit:
  pass
from absl import flags
sys.stdout.write("\n" + json.dumps({
    "tensorflow_imported": "tensorflow" in sys.modules,
    "flags": {f.name: f.help
              for f in flags.FLAGS.get_key_flags_for_module(module)},
}))
"""


def _help(program, module):
  """Runs `program --help`; returns (help text, report of the driver)."""
  script = os.path.join(sysconfig.get_path("scripts"), program)
  if not os.path.exists(script):
    # A program added since tfvae was installed (pip install -e . writes its
    # script): a wrapper like the one pip would write.
    script = os.path.join(tempfile.mkdtemp(), program)
    with open(script, "w") as f:
      f.write(f"import sys\nfrom {module} import run_main\n"
              "sys.exit(run_main())\n")
  result = subprocess.run([sys.executable, "-c", _DRIVER, script, module],
                          cwd=util.REPO, capture_output=True, text=True,
                          timeout=300)
  text, _, report = result.stdout.rpartition("\n")
  if result.returncode or not report.startswith("{"):
    raise AssertionError(f"{program} --help failed:\n{result.stderr[-2000:]}")
  return text, json.loads(report)


def _squeezed(text):
  # Help is wrapped at spaces and after hyphens; without whitespace a help
  # text reads the same however it was wrapped.
  return re.sub(r"\s+", "", text)


class CliHelpTest(parameterized.TestCase):

  @parameterized.named_parameters(
      (program, program, module)
      for program, module in _console_scripts().items())
  def test_help_lists_the_programs_flags(self, program, module):
    text, report = _help(program, module)
    self.assertNotEmpty(report["flags"], f"{module} defines no flags")
    self.assertFalse(report["tensorflow_imported"],
                     f"{program} --help imported TensorFlow")
    for name, help_text in report["flags"].items():
      # absl wraps a long list of choices onto the next line.
      self.assertRegex(text, rf"--(\[no\])?{name}:\s", f"{program}: --{name}")
      self.assertIn(_squeezed(help_text)[:60], _squeezed(text),
                    f"{program}: help of --{name}")

  def test_train_help_names_its_flags_and_docstring(self):
    text, _ = _help("tfvae-train", "tools.train")
    self.assertIn("--run_dir: Run directory: config, checkpoints", text)
    self.assertIn("--latent_dim: Dimension of the latent code z.", text)
    self.assertIn("Trains a tfvae model", text)

  def test_build_generator_choices_are_the_mapping_routes(self):
    # Read from the source: importing the program here would define its
    # flags a second time beside other programs' in this process.
    # pylint: disable=g-import-not-at-top
    from tfvae import config
    from tfvae.migrate import mapping
    with open(os.path.join(util.REPO, "tools", "build_generator.py")) as f:
      tree = ast.parse(f.read())
    choices = [ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and any(
                   getattr(t, "id", None) == "MAPPED_LIKELIHOODS"
                   for t in node.targets)]
    self.assertEqual(choices, [tuple(mapping.LIKELIHOODS)])
    self.assertEqual(tuple(config.NETWORKS), tuple(mapping.NETWORKS))

  def test_train_help_does_not_import_tensorflow(self):
    _, report = _help("tfvae-train", "tools.train")
    self.assertFalse(report["tensorflow_imported"])


if __name__ == "__main__":
  absltest.main()
