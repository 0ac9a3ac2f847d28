"""Where the templates are: inside the installed package (wheels map templates/ to
xl_ecom/templates) or, for a source checkout / editable install, the repository's templates/."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent  # the xl_ecom package


def _templates_dir() -> Path:
    for candidate in (_HERE / "templates", _HERE.parent / "templates"):
        if (candidate / "vba").is_dir():
            return candidate
    return _HERE.parent / "templates"


TEMPLATES_DIR = _templates_dir()
