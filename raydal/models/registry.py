"""timm-style model registry: a backbone is one decorated builder function.

The bottom of ``raydal.models``: it imports no other module of the package, so
``backbones`` registers into it and ``factory`` builds from it, one way. It
imports no torch either: the built-in backbones are registered here by import
path (``"module:function"``), so ``list_models()`` answers (a config's backbone
check, the CLI's help) without loading torch; ``get_builder`` imports the
module on first use, and its ``@register_model`` puts the function in place.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from raydal.exceptions import ModelError

#: name -> the builder, or its ``"module:function"`` path until first use.
_BUILDERS: dict[str, Callable[[int], Any] | str] = {}


def register_model(fn: Callable[[int], Any] | str, target: str | None = None) -> Callable[[int], Any] | str:
    """Register ``fn(in_channels) -> Backbone`` under ``fn.__name__``.

    As a decorator: ``@register_model``. By import path, without importing the
    module (nor torch): ``register_model("resnet18", "raydal.models.backbones:resnet18")``;
    the module is imported when the model is first built, and its decorator
    then replaces the path by the function.
    """
    if isinstance(fn, str):
        name = fn
        if not isinstance(target, str) or ":" not in target:
            raise ModelError(f"register_model({name!r}, target) needs target 'module:function'. Got {target!r}.")
        if name in _BUILDERS and _path(_BUILDERS[name]) != target:
            raise ModelError(f"A model named {name!r} is already registered; pick another name.")
        _BUILDERS.setdefault(name, target)
        return target
    name = fn.__name__
    old = _BUILDERS.get(name)
    if old is not None and old is not fn and old != _path(fn):
        raise ModelError(f"A model named {name!r} is already registered; pick another function name.")
    _BUILDERS[name] = fn
    return fn


def _path(fn: Callable[[int], Any] | str) -> str:
    return fn if isinstance(fn, str) else f"{fn.__module__}:{fn.__name__}"


def list_models() -> list[str]:
    """Names ``create_model`` accepts, sorted (no module is imported to list them)."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable[[int], Any]:
    """The registered ``builder(in_channels) -> Backbone`` called ``name``; ModelError lists the valid names."""
    if name not in _BUILDERS:
        raise ModelError(f"Unknown model {name!r}. Valid models: {', '.join(list_models())}.")
    builder = _BUILDERS[name]
    if isinstance(builder, str):
        module, _, attr = builder.partition(":")
        fn = getattr(importlib.import_module(module), attr)
        _BUILDERS[name] = builder = fn
    return builder


# The built-in backbones (``raydal.models.backbones``), by path: listed without importing torch.
for _name in ("densenet121", "resnet18", "resnet50", "smallcnn"):
    register_model(_name, f"raydal.models.backbones:{_name}")
del _name
