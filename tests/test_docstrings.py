"""Every public class and function has a numpydoc docstring that documents its parameters."""

import inspect
import re

import pytest

import skannot
from skannot import annotations, datasets, exceptions, metrics, model_selection, plotting

MODULES = [skannot, annotations, datasets, exceptions, metrics, model_selection, plotting]
# Inherited from scikit-learn's BaseEstimator contract, documented there.
SKLEARN_CONTRACT = {"get_params", "set_params", "set_output", "get_metadata_routing"}


def public_objects():
    for module in MODULES:
        names = getattr(module, "__all__", None) or [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        ]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants such as skannot.FAST_PATHS are documented where they are defined
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if (
                        inspect.isfunction(member)
                        and not attr.startswith("_")
                        and attr not in SKLEARN_CONTRACT
                    ):
                        yield f"{module.__name__}.{name}.{attr}", member


def section(doc, title):
    match = re.search(
        rf"^\s*{title}\n\s*-{{{len(title)}}}\n(?P<body>.*?)(?=^\s*\w[\w ]*\n\s*-{{3,}}\n|\Z)",
        doc,
        re.M | re.S,
    )
    return match["body"] if match else None


OBJECTS = dict(public_objects())


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_numpydoc_docstring(name):
    obj = OBJECTS[name]
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    # classes that inherit their constructor (exceptions) take nothing of their own
    own_signature = inspect.isfunction(obj) or "__init__" in vars(obj)
    signature = inspect.signature(obj) if own_signature else None
    parameters = [
        p.name if p.kind is not p.VAR_KEYWORD else f"**{p.name}"
        for p in (signature.parameters.values() if signature else [])
        if p.name != "self"
    ]
    if parameters:
        body = section(doc, "Parameters")
        assert body is not None, f"{name} lacks a Parameters section"
        documented = set(re.findall(r"^(\*{0,2}\w+)(?: :|$)", body, re.M))
        missing = [p for p in parameters if p not in documented]
        assert not missing, f"{name} does not document {missing}"
    if inspect.isfunction(obj) and not name.endswith(".__init__"):
        # numpydoc documents what a generator gives in a Yields section
        result = "Yields" if inspect.isgeneratorfunction(obj) else "Returns"
        assert section(doc, result) is not None, f"{name} lacks a {result} section"
