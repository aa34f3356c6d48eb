"""The package's layering, read from its import statements: the library never imports the
experiments or its own command lines, the engine imports no task, and no two modules import
each other in a cycle."""
import ast
import os

from helpers import ROOT

PACKAGE = os.path.join(ROOT, 'gluon_resnest')
# a module may import modules of its own layer and the layers before it
LAYERS = [('runtime', 'argtypes'), ('layers',), ('backbone',), ('zoo',), ('deploy',),
          ('engine',), ('classification', 'segmentation', 'detection'),
          ('launch', 'analysis', 'tasks'), ('commands',)]


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                yield '.'.join(parts), path


def _imports(module, path):
    """Absolute names of the gluon_resnest/experiments modules ``module`` imports (at any
    level of the file, lazily imported ones included)."""
    package = module.split('.') if path.endswith('__init__.py') else module.split('.')[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(base + '.' + alias.name for alias in node.names)
    return {name for name in found if name.split('.')[0] in ('gluon_resnest', 'experiments')}


def _layer(module):
    parts = module.split('.')
    top = parts[1] if len(parts) > 1 else ''
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    return None


def test_the_library_never_imports_the_experiments_or_its_command_lines():
    modules = dict(_modules())
    for module, path in modules.items():
        for name in _imports(module, path):
            assert not name.startswith('experiments'), (module, name)
            if not module.startswith('gluon_resnest.commands'):
                assert not name.startswith('gluon_resnest.commands'), (module, name)


def test_each_layer_imports_only_itself_and_the_layers_before_it():
    modules = dict(_modules())
    for module, path in modules.items():
        own = _layer(module)
        if own is None:
            continue
        for name in _imports(module, path):
            other = _layer(name)
            assert other is None or other <= own, '%s imports %s' % (module, name)
    # the tasks are independent of each other
    for module, path in modules.items():
        tasks = ('classification', 'segmentation', 'detection')
        for a in tasks:
            if module.startswith('gluon_resnest.' + a + '.'):
                assert not any(n.startswith('gluon_resnest.' + b) for b in tasks if b != a
                               for n in _imports(module, path)), module


def test_no_import_cycles_between_modules():
    modules = dict(_modules())
    graph = {m: {n for n in _imports(m, p) if n in modules and n != m}
             for m, p in modules.items()}
    # a package's __init__ re-exports its modules: an edge into a package counts, the
    # package importing its own children does not
    for m in graph:
        graph[m] = {n for n in graph[m] if not n.startswith(m + '.')}
    state = {}

    def visit(node, stack):
        state[node] = 'open'
        for nxt in graph[node]:
            if state.get(nxt) == 'open':
                raise AssertionError('import cycle: ' + ' -> '.join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 'done'
    for node in sorted(graph):
        if node not in state:
            visit(node, [])
