"""The per-user data folder (``MEDM2G_HOME``) and where the default model is found.

``MEDM2G_HOME`` if set, else ``$XDG_DATA_HOME/medm2g`` (absolute XDG paths only, as the XDG spec
says), else the platform's usual place: ``~/.local/share/medm2g`` on Linux,
``~/Library/Application Support/medm2g`` on macOS, ``%LOCALAPPDATA%\\medm2g`` on Windows.
Installed models live in ``<home>/models/<name>``; ``<home>/default-model`` names the default one.
No torch here: the CLI resolves paths before it imports anything heavy.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DEFAULT_MODEL_FILE = "default-model"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def data_home() -> Path:
    """The per-user data folder (it may not exist yet)."""
    env = os.environ.get("MEDM2G_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "medm2g"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "medm2g"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "medm2g"
    return Path.home() / ".local" / "share" / "medm2g"


def models_dir() -> Path:
    """``<home>/models``: one folder per installed model."""
    return data_home() / "models"


def valid_model_name(name: str) -> bool:
    """A model name usable as one folder name (letters, digits, '.', '_', '-'; no path parts)."""
    return bool(_NAME_OK.match(name)) and name not in (".", "..")


def installed_model(name: str) -> Path | None:
    """``<home>/models/<name>`` if it is an installed model folder."""
    if not valid_model_name(name):
        return None
    p = models_dir() / name
    return p if (p / "medm2g.json").is_file() else None


def default_model_name() -> str | None:
    """The name recorded in ``<home>/default-model`` (written by ``medm2g weights install``)."""
    try:
        name = (data_home() / DEFAULT_MODEL_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if valid_model_name(name) else None


def checkout_demo() -> Path | None:
    """``weights/medm2g-demo`` of the source checkout the package runs from (None when installed
    from a wheel: site-packages has no pyproject.toml next to the package)."""
    root = Path(__file__).resolve().parents[1]
    demo = root / "weights" / "medm2g-demo"
    return demo if (root / "pyproject.toml").is_file() and (demo / "medm2g.json").is_file() else None
