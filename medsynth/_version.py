"""The version of medsynth, in one module that imports nothing.

Every module that records the version (manifests, provenance, ``--version``) imports it from
here rather than from the package face, so no module depends on ``medsynth/__init__.py``.
"""

__version__ = "0.1.0"
