"""timm-style model registry: a backbone is one decorated builder function.

The bottom of ``raydal.models``: it imports no other module of the package, so
``backbones`` registers into it and ``factory`` builds from it, one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raydal.exceptions import ModelError

_BUILDERS: dict[str, Callable[[int], Any]] = {}


def register_model(fn: Callable[[int], Any]) -> Callable[[int], Any]:
    """Register ``fn(in_channels) -> Backbone`` under ``fn.__name__``."""
    name = fn.__name__
    if name in _BUILDERS and _BUILDERS[name] is not fn:
        raise ModelError(f"A model named {name!r} is already registered; pick another function name.")
    _BUILDERS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names ``create_model`` accepts, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable[[int], Any]:
    """The registered ``builder(in_channels) -> Backbone`` called ``name``; ModelError lists the valid names."""
    if name not in _BUILDERS:
        raise ModelError(f"Unknown model {name!r}. Valid models: {', '.join(list_models())}.")
    return _BUILDERS[name]
