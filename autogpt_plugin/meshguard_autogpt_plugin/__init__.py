"""MeshGuard's AutoGPT plugin (plugin-era AutoGPT: PyPI agpt 0.2.2 to v0.4.7).

Built into a zip by ``meshguard plugin build``; AutoGPT loads it from its plugins folder. AutoGPT
instantiates every class in this namespace that has ``_abc_impl``, so it holds MeshGuardPlugin only.
"""

from .plugin import MeshGuardPlugin

__all__ = ["MeshGuardPlugin"]
