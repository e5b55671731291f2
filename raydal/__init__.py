"""raydal: distributed active learning for multi-label remote-sensing image classification.

The compute layers (``data``, ``models``, ``training``, ``query``, ``al``) import
no Ray; ``raydal.distributed`` runs them on a Ray cluster.
"""

__version__ = "0.1.0"
