"""The house: the lesson is a package of its own that a learner reads alone, it reaches the
harness through three named seams only, its model is plain Keras, and no module grows past what
a maintainer reads at once."""

import ast
import inspect

import pytest

from conftest import REPO_ROOT

PACKAGES = ("lesson", "harness", "analysis", "tools")
# The lesson's only ways into the harness: what is measured, attached from outside, and the
# Ray driver's bookkeeping.
SEAMS = {("harness.instruments", "instrument"), ("harness.run_state", "RayRun"), ("harness.tune_record", "SearchRecord")}


def imports_of(path):
    """(module, name) for every `from module import name`, and (module, None) for `import module`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {(alias.name, None) for alias in node.names}
    return found


def test_the_lesson_is_at_most_eight_modules_and_imports_the_harness_only_through_its_seams():
    # Besides the package's __init__.py, which sets the environment before TensorFlow and Ray load.
    modules = sorted(path for path in (REPO_ROOT / "lesson").glob("*.py") if path.name != "__init__.py")
    assert len(modules) <= 8, [path.name for path in modules]
    used = set()
    for path in modules:
        for module, name in imports_of(path):
            top = module.split(".")[0]
            assert top not in ("analysis", "tools"), f"{path.name} imports {module}"
            if top == "harness":
                assert (module, name) in SEAMS, f"{path.name} imports {module}.{name}, not a seam"
                used.add((module, name))
    assert used == SEAMS


def test_create_model_takes_no_timing_or_benchmark_parameter():
    from lesson.model import create_model

    assert list(inspect.signature(create_model).parameters) == ["learning_rate", "input_shape", "num_classes"]


@pytest.mark.parametrize("path", sorted(path for package in PACKAGES for path in (REPO_ROOT / package).glob("*.py")),
                         ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_no_python_module_is_longer_than_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300
