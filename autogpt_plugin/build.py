"""Build the zip AutoGPT loads from its plugins folder: the plugin package plus the launcher module.

AutoGPT's loader (PyPI agpt 0.2.2 to v0.4.7, ``autogpt/plugins.py``) opens every ``*.zip`` in its
plugins folder, takes the first ``__init__.py`` it finds (0.2.2; later releases take each one) and
imports its folder as a package with zipimport. So the zip holds ONE package,
``meshguard_autogpt_plugin/``, whose ``__init__.py`` comes first and is the only ``__init__.py``;
the launcher goes inside it as ``meshguard_autogpt_plugin/meshguard_autogpt.py``, so the plugin
governs with the launcher's own code, not a copy of it, and needs nothing installed but
``requests`` and ``auto-gpt-plugin-template``, which AutoGPT already has.

The build is reproducible: fixed timestamps and order, so the same sources give the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "meshguard_autogpt_plugin"
PLUGIN_CLASS = "MeshGuardPlugin"  # what ALLOWLISTED_PLUGINS / plugins_config.yaml must name
ZIP_NAME = f"{PACKAGE}.zip"
SOURCES = Path(__file__).resolve().parent / PACKAGE
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold


class BuildError(Exception):
    """The plugin's sources or the launcher are missing; the message says which and what to do."""


def _launcher_source() -> Path:
    """meshguard_autogpt.py: beside this folder in a checkout, else wherever it is installed."""
    beside = SOURCES.parent.parent / "meshguard_autogpt.py"
    if beside.is_file():
        return beside
    spec = importlib.util.find_spec("meshguard_autogpt")
    if spec is not None and spec.origin and Path(spec.origin).is_file():
        return Path(spec.origin)
    raise BuildError("meshguard_autogpt.py (the launcher, which the plugin bundles) was not found beside "
                     f"{SOURCES.parent} nor installed; build from a checkout of the repository")  # fmt: skip


def _entries() -> list[tuple[str, Path]]:
    """(name in the zip, source file), the package's __init__.py first."""
    init = SOURCES / "__init__.py"
    if not init.is_file():
        raise BuildError(f"{init} is missing; build from a complete checkout of the repository")
    modules = sorted(p for p in SOURCES.glob("*.py") if p.name not in ("__init__.py", "meshguard_autogpt.py"))
    return [(f"{PACKAGE}/__init__.py", init), *((f"{PACKAGE}/{p.name}", p) for p in modules),
            (f"{PACKAGE}/meshguard_autogpt.py", _launcher_source())]  # fmt: skip


def build_plugin(out_dir: str | os.PathLike[str] = "plugins") -> Path:
    """Write ``OUT_DIR/meshguard_autogpt_plugin.zip`` (creating OUT_DIR) and return its path.

    Written to a temporary file first, then renamed: an AutoGPT starting meanwhile never reads half a zip.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / ZIP_NAME
    entries = _entries()
    fd, tmp = tempfile.mkstemp(prefix=".meshguard-plugin-", suffix=".zip", dir=out)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, source in entries:
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, source.read_bytes())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m autogpt_plugin.build [--out DIR]``, for when the `meshguard` CLI is not installed."""
    parser = argparse.ArgumentParser(prog="python -m autogpt_plugin.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="plugins", help="AutoGPT's plugins folder (default: ./plugins)")
    args = parser.parse_args(argv)
    try:
        path = build_plugin(args.out)
    except (BuildError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
