"""raydal: distributed active learning for multi-label remote-sensing image classification.

The compute layers (``data``, ``models``, ``training``, ``query``, ``al``) import
no Ray; ``raydal.distributed`` runs them on a Ray cluster. ``raydal.Learner``
is the Python API for notebooks (docs/api.md).
"""

__version__ = "0.1.0"

__all__ = ["Learner"]


def __getattr__(name: str):
    """``from raydal import Learner`` without importing torch and Ray for ``import raydal``."""
    if name == "Learner":
        from raydal.api import Learner

        return Learner
    raise AttributeError(f"module 'raydal' has no attribute {name!r}")
