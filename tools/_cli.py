"""Shared entry-point wrapper for tfvae's absl programs."""
import functools
import importlib.util
import os
import sys

from absl import app
from absl import flags
from absl import logging

from tfvae import errors


def lazy_import(name):
  """Module `name`, executed on first attribute access rather than now.

  A program binds the TensorFlow-heavy modules it uses with this at its top,
  so that `--help` and usage errors, which touch none of them, start no
  TensorFlow. The parent package of `name` is imported at once, so `name`
  should be a top-level package of tfvae's (e.g. "tfvae.export",
  "tfvae.migrate") or a module whose parent imports cheaply ("tfvae.data").

  Args:
    name: The module's dotted name.

  Returns:
    The module object; a later `import name` gets the same one.
  """
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.find_spec(name)
  loader = importlib.util.LazyLoader(spec.loader)
  spec.loader = loader
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  loader.exec_module(module)
  return module


_DEFINE_BY_TYPE = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_bool,
}


def define_config_flags(names, module_name):
  """Defines a flag for each named `config.Config` field, as tfvae-train's.

  Its default, help text and choices are the field's, so that a program
  taking some of tfvae-train's settings (tfvae-migrate's --data) states them
  once, in tfvae/config.py.

  Args:
    names: Field names; tuple fields become comma-separated lists.
    module_name: The program's module (`__name__`), whose `--help` lists
      them.
  """
  from tfvae import config as config_lib  # pylint: disable=g-import-not-at-top
  if module_name == "__main__":
    module_name = sys.argv[0]  # as absl names the flags of `python -m x`
  by_name = {field.name: field for field in config_lib.fields()}
  for name in names:
    field = by_name[name]
    if field.choices:
      flags.DEFINE_enum(name, field.default, field.choices, field.help,
                        module_name=module_name)
    elif field.type is tuple:
      flags.DEFINE_list(name, [str(v) for v in field.default], field.help,
                        module_name=module_name)
    else:
      _DEFINE_BY_TYPE[field.type](name, field.default, field.help,
                                  module_name=module_name)


def config_flag_values(names):
  """{name: value} of flags `define_config_flags` defined, lists as tuples of
  ints, ready for `config.Config(**values)`.

  Raises:
    app.UsageError: If a list flag holds something other than integers.
  """
  values = {}
  for name in names:
    value = flags.FLAGS[name].value
    if isinstance(value, list):
      try:
        value = tuple(int(v) for v in value)
      except ValueError:
        raise app.UsageError(f"--{name}={','.join(value)}: expected "
                             "comma-separated integers") from None
    values[name] = value
  return values


def flags_only(body):
  """Makes `body()` an absl `main(argv)` that refuses positional arguments.

  The programs that take flags alone share this shape: stray arguments are a
  usage error, the library does the work, and `run` turns its `TfvaeError`
  into one line on stderr and exit status 1.

  Args:
    body: A function of no arguments, defined in the program's module.

  Returns:
    `main(argv)`, for `run`; it returns what `body` returns.
  """

  @functools.wraps(body)
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    return body()

  return main


def _document_program(program):
  """Makes `--help` describe `program` when it runs as a console script.

  absl's `--help` prints the docstring of `__main__` and the key flags of the
  module named `sys.argv[0]`. Run as `python -m tools.x`, that module is the
  program; run as an installed `tfvae-*` script, it is setuptools' wrapper,
  which has neither, so the program's docstring and key flags are lent to it.

  Args:
    program: The module that defines the program's flags and main.
  """
  wrapper = sys.modules["__main__"]
  if program is wrapper:
    return
  for flag in flags.FLAGS.get_key_flags_for_module(program):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  if not wrapper.__doc__:
    wrapper.__doc__ = program.__doc__


def run(main):
  """Runs an absl `main`, turning `TfvaeError`s into one-line errors.

  Args:
    main: A function `main(argv)` as taken by `absl.app.run`, defined in the
      program's module (the module whose flags `--help` lists).
  """

  def guarded_main(argv):
    try:
      return main(argv)
    except (errors.TfvaeError, app.UsageError) as e:
      prog = os.path.basename(sys.argv[0]) or "tfvae"
      message = " ".join(str(e).split("\n"))
      if isinstance(e, app.UsageError):
        message += " (see --help)"
      sys.stderr.write(f"{prog}: error: {message}\n")
      sys.stderr.flush()
      # os._exit would skip absl's flush; SystemExit keeps it orderly.
      raise SystemExit(1)

  _document_program(sys.modules[main.__module__])
  logging.set_verbosity(logging.INFO)
  app.run(guarded_main)
