"""The package's structure, drawn from its imports: arrows point one way.

Read with `ast` from the source files (nothing is imported), so a circle
hidden by a function-local import is found as surely as a top-level one.
"""
import ast
import os

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGE = "tfvae"
# Modules that must import without TensorFlow import the code they call on
# first use, deliberately: the package's `__init__` (so `import tfvae` starts
# no TensorFlow), the kind registry (whose builders import the model modules
# when called) and the config (whose checks parse a value with the code that
# uses it), so that flag choices and --help need no TensorFlow. Their imports
# still count as arrows for the circle check.
_LAZY_LOADERS = ("tfvae", "tfvae.kinds", "tfvae.config")


def _module_files():
  """{dotted module name: path} of every module of the package."""
  found = {}
  base = os.path.join(_ROOT, _PACKAGE)
  for directory, _, names in os.walk(base):
    for name in names:
      if not name.endswith(".py"):
        continue
      path = os.path.join(directory, name)
      parts = os.path.relpath(path, _ROOT)[:-len(".py")].split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      found[".".join(parts)] = path
  return found


def _imports(path, modules, package):
  """[(imported module, lineno, at top level?)] of one file, package-internal.

  `from tfvae import x` counts as importing `tfvae.x` when that is a module,
  else as importing the package `tfvae` itself.
  """
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  top_level = {id(node) for node in tree.body}
  result = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 \
            else package
        base = f"{base}.{node.module}" if node.module else base
      else:
        base = node.module or ""
      names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
               else base for alias in node.names]
    else:
      continue
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        result.append((name, node.lineno, id(node) in top_level))
  return result


def _graph():
  modules = _module_files()
  graph = {}
  for name, path in modules.items():
    package = name if path.endswith("__init__.py") else \
        name.rpartition(".")[0]
    graph[name] = _imports(path, modules, package)
  return graph


def _find_cycle(edges):
  """A list of modules forming a circle in {module: {imported}}, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt, stack)
        if cycle:
          return cycle
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(edges):
    if node not in state:
      cycle = visit(node, [])
      if cycle:
        return cycle
  return None


class LayoutTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.graph = _graph()
    # A package's __init__ re-exports its modules: its own imports of them
    # are not arrows of the design, so they are left out of the circles.
    self.edges = {
        module: {target for target, _, _ in imports
                 if not (self._is_package(module) and
                         target.startswith(module + "."))
                 and target != module}
        for module, imports in self.graph.items()}

  def _is_package(self, module):
    return any(other.startswith(module + ".") for other in self.graph)

  def test_the_modules_import_each_other_without_a_circle(self):
    cycle = _find_cycle(self.edges)
    self.assertIsNone(cycle, f"import circle: {' -> '.join(cycle or [])}")

  def test_no_function_local_import_of_a_package_module(self):
    local = [f"{module} line {line}: {target}"
             for module, imports in self.graph.items()
             for target, line, top in imports
             if not top and module not in _LAZY_LOADERS]
    self.assertEqual(local, [], "function-local imports of tfvae modules "
                     "hide the structure; import at the top")

  def test_the_core_never_imports_the_migration_package(self):
    offenders = sorted(
        module for module, targets in self.edges.items()
        if not module.startswith(f"{_PACKAGE}.migrate")
        and module != _PACKAGE
        and any(t.startswith(f"{_PACKAGE}.migrate") for t in targets))
    self.assertEqual(offenders, [])

  def test_the_finder_sees_a_known_circle(self):
    # The check above could pass by never seeing an edge; a planted circle
    # must be found.
    self.assertEqual(_find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}),
                     ["a", "b", "c", "a"])
    self.assertIn("tfvae.rng", self.edges["tfvae.input_pipeline"])


if __name__ == "__main__":
  absltest.main()
