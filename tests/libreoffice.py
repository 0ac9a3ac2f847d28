"""LibreOffice headless for tests: recalculate workbooks and render PDFs.

Tests that use it FAIL when LibreOffice is missing (CI installs it); they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_PROFILE = Path(tempfile.gettempdir()) / f"xl-ecom-lo-profile-{os.getpid()}"


def soffice() -> str:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if not exe:
        raise AssertionError("LibreOffice (soffice) is not installed: apt-get install -y libreoffice-calc-nogui")
    return exe


def convert(paths, outdir, fmt: str = "xlsx", timeout: int = 240) -> list[Path]:
    """Open each file in LibreOffice (recalculating every formula) and save it as ``fmt``.

    Returns the converted files in the order given.  One soffice process handles the batch.
    """
    paths = [Path(p) for p in paths]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    filt = {"xlsx": "xlsx:Calc MS Excel 2007 XML", "pdf": "pdf:calc_pdf_Export"}.get(fmt, fmt)
    cmd = [
        soffice(),
        f"-env:UserInstallation=file://{_PROFILE}",
        "--headless",
        "--norestore",
        "--convert-to",
        filt,
        "--outdir",
        str(outdir),
        *map(str, paths),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    ext = fmt.split(":")[0]
    out = [outdir / (p.stem + "." + ext) for p in paths]
    missing = [str(o) for o in out if not o.exists()]
    if missing:
        raise AssertionError(f"LibreOffice did not produce {missing}: {proc.stdout}\n{proc.stderr}")
    return out


def recalculated(paths, outdir) -> list[Path]:
    """Recalculate in LibreOffice; read results with openpyxl.load_workbook(p, data_only=True)."""
    return convert(paths, outdir, "xlsx")
