"""MeshGuard's AutoGPT plugin: its sources (meshguard_autogpt_plugin/) and the build of the zip AutoGPT loads.

Build it with ``meshguard plugin build --out PLUGINS_DIR`` (or ``python -m autogpt_plugin.build``);
see docs/plugin.md.
"""

from autogpt_plugin.build import PACKAGE, PLUGIN_CLASS, ZIP_NAME, build_plugin

__all__ = ["build_plugin", "PACKAGE", "PLUGIN_CLASS", "ZIP_NAME"]
