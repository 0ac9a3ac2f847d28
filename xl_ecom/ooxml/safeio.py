"""Files from outside: open returned county workbooks as untrusted, write the city workbook safely.

Reading (:func:`open_untrusted`):

- the file size is limited before anything is read;
- the zip container is checked before any XML is parsed: number of members and of sheet parts,
  declared uncompressed sizes (Python's zipfile never inflates a member beyond its declared size,
  so the declared sizes bound the work), compression ratio per member and overall, duplicate or
  encrypted members; then every member is inflated as a stream and counted (headers can lie: a
  member that gives other than its declared size, or fails its CRC, refuses the file);
- every XML part's prolog is scanned: OOXML never uses a DTD, so a ``<!DOCTYPE`` (billion laughs,
  external entities) refuses the file, whichever part it is in.  This scan is the guarantee:
  openpyxl reads worksheets through defusedxml's iterparse (a second line there), but with lxml
  installed it parses the other parts with lxml (entities left unresolved, not refused);
- macros are never run: openpyxl never executes VBA, and the VBA project, ActiveX controls,
  embedded objects, external links and data connections are not even loaded (each is reported);
- values only: the workbook is opened with ``data_only=True`` (cached results; formulas in a
  returned file are not trusted), and every formula cell is listed so the caller can report it,
  and report a formula with no cached value.

Writing: :func:`write_cell_value` stores text that starts with = + - @ (or a tab/CR) as a text
cell with the quote prefix, never as a formula; :func:`safe_text` neutralises such text for places
where the cell type cannot be chosen (xlwings, CSV).  :func:`ensure_not_open` refuses when Excel's
``~$`` lock file is present and :func:`write_atomically` replaces a file through a temporary file
and keeps a backup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import socket
import tempfile
import xml.parsers.expat
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
from defusedxml import DefusedXmlException
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils.cell import column_index_from_string, coordinate_from_string, get_column_letter

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.processes import pid_alive
from xl_ecom.ooxml.worksheet import formula_of

MAX_FILE_BYTES = 50 * 1024 * 1024  # a county workbook with 10,000 rows is about 1 MB
# A county workbook has about 40 parts and 13 sheets; 10,000 rows in one input sheet inflate to
# about 14 MB (the city workbook: 44 parts, 16 sheets).  The limits leave room for 100,000-row
# sheets (collect.MAX_ROWS) and refuse a package of hundreds of hidden sheets before any XML is read.
MAX_MEMBERS = 300
MAX_SHEETS = 100  # worksheet, chartsheet, dialog and macro sheet parts
MAX_TOTAL_UNCOMPRESSED = 256 * 1024 * 1024
MAX_MEMBER_UNCOMPRESSED = 200 * 1024 * 1024
MAX_RATIO = 200  # uncompressed : compressed, for members above RATIO_FLOOR
RATIO_FLOOR = 1024 * 1024
MAX_TOTAL_RATIO = 100  # the whole package, once it inflates to more than TOTAL_RATIO_FLOOR
TOTAL_RATIO_FLOOR = 32 * 1024 * 1024
_SHEET_PART = re.compile(r"^xl/(worksheets|chartsheets|dialogsheets|macrosheets)/[^/]+\.xml$", re.I)
MAX_PROLOG_BYTES = 1024 * 1024  # an XML part must reach its root element within this

from xl_ecom.common.textsafe import CONTROL_PREFIXES, FORMULA_PREFIXES, is_formula_like, neutralise  # noqa: E402,F401 (one neutraliser)

# parts of a package that can carry active content; none is loaded, each is reported
_ACTIVE_PARTS = (
    (re.compile(r"(^|/)vbaProject\.bin$", re.I), "宏（VBA 工程）"),
    (re.compile(r"(^|/)vbaProjectSignature", re.I), "宏签名"),
    (re.compile(r"^xl/macrosheets/", re.I), "Excel 4.0 宏表"),
    (re.compile(r"^xl/activeX/", re.I), "ActiveX 控件"),
    (re.compile(r"^xl/embeddings/", re.I), "嵌入对象"),
    (re.compile(r"^xl/externalLinks/", re.I), "外部链接"),
    (re.compile(r"^xl/connections\.xml$", re.I), "数据连接"),
    (re.compile(r"^customUI/", re.I), "自定义功能区"),
)


class UntrustedFileError(XlEcomError, ValueError):
    """A returned file is refused; the message is Chinese and names the file."""


class FileBusyError(XlEcomError):
    """The target file is open in Excel (its ``~$`` lock file is present)."""


@dataclass
class OpenReport:
    """What :func:`open_untrusted` noticed while opening a file."""

    path: Path
    notes: list[str] = field(default_factory=list)  # Chinese, one line each
    ignored_parts: list[str] = field(default_factory=list)
    # sheet title -> {A1 ref: formula text}, for every formula cell in the file
    formulas: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def macros_ignored(self) -> bool:
        return any(re.search(r"vbaProject|macrosheets", p, re.I) for p in self.ignored_parts)


# ---------------------------------------------------------------------------------------------
# checks before parsing
# ---------------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f}MB"


def check_file_size(path: Path, limit: int = MAX_FILE_BYTES) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UntrustedFileError(f"文件“{path.name}”不存在") from None
    if size > limit:
        raise UntrustedFileError(
            f"文件“{path.name}”大小为{_mb(size)}，超过上限{_mb(limit)}，拒绝打开（县区工作簿通常不到1MB，请核对是否发错文件）"
        )
    if size == 0:
        raise UntrustedFileError(f"文件“{path.name}”是空文件")
    return size


def check_zip(path: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Refuse zip bombs and odd containers before anything is inflated."""
    infos = zf.infolist()
    name = path.name
    if len(infos) > MAX_MEMBERS:
        raise UntrustedFileError(f"文件“{name}”含{len(infos)}个部件，超过上限{MAX_MEMBERS}个，疑为压缩炸弹，拒绝打开")
    seen: set[str] = set()
    total = 0
    for info in infos:
        if info.filename in seen:
            raise UntrustedFileError(f"文件“{name}”中部件“{info.filename}”重复出现，文件可能被篡改，拒绝打开")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise UntrustedFileError(f"文件“{name}”中部件“{info.filename}”已加密，无法读取；请取消工作簿密码后另存再报送")
        if info.file_size > MAX_MEMBER_UNCOMPRESSED:
            raise UntrustedFileError(
                f"文件“{name}”中部件“{info.filename}”解压后达{_mb(info.file_size)}，超过上限{_mb(MAX_MEMBER_UNCOMPRESSED)}，疑为压缩炸弹，拒绝打开"
            )
        if info.file_size > RATIO_FLOOR:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > MAX_RATIO:
                raise UntrustedFileError(
                    f"文件“{name}”中部件“{info.filename}”压缩比为{ratio:.0f}:1（解压后{_mb(info.file_size)}），"
                    f"超过上限{MAX_RATIO}:1，疑为压缩炸弹，拒绝打开"
                )
        total += info.file_size
        if total > MAX_TOTAL_UNCOMPRESSED:
            raise UntrustedFileError(f"文件“{name}”解压后总大小超过{_mb(MAX_TOTAL_UNCOMPRESSED)}，疑为压缩炸弹，拒绝打开")
    sheets = sum(1 for info in infos if _SHEET_PART.match(info.filename))
    if sheets > MAX_SHEETS:
        raise UntrustedFileError(
            f"文件“{name}”含{sheets}个工作表部件，超过上限{MAX_SHEETS}个（县区工作簿只有十余个工作表），疑为异常文件，拒绝打开"
        )
    compressed = sum(info.compress_size for info in infos)
    if total > TOTAL_RATIO_FLOOR and total / max(compressed, 1) > MAX_TOTAL_RATIO:
        raise UntrustedFileError(
            f"文件“{name}”解压后共{_mb(total)}，是压缩大小的{total / max(compressed, 1):.0f}倍，"
            f"超过上限{MAX_TOTAL_RATIO}倍，疑为压缩炸弹，拒绝打开"
        )
    if "[Content_Types].xml" not in seen:
        raise UntrustedFileError(f"文件“{name}”不是 Excel 工作簿（缺少 [Content_Types].xml）")
    return infos


def count_inflated(path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limit: int | None = None) -> int:
    """Inflate every member as a stream, counting what comes out, and refuse once the running total
    passes ``limit`` or a member gives other than its declared size (headers can lie; zipfile's CRC
    check then also catches altered data).  Returns the total."""
    limit = MAX_TOTAL_UNCOMPRESSED if limit is None else limit
    total = 0
    for info in infos:
        got = 0
        try:
            with zf.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
                    if total + got > limit:
                        raise UntrustedFileError(f"文件“{path.name}”解压后总大小超过{_mb(limit)}，疑为压缩炸弹，拒绝打开")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise UntrustedFileError(f"文件“{path.name}”的部件“{info.filename}”无法解压（{exc}），文件已损坏") from None
        if got != info.file_size:
            raise UntrustedFileError(
                f"文件“{path.name}”的部件“{info.filename}”解压后为{got}字节，与文件头声明的{info.file_size}字节不符，文件可能被篡改，拒绝打开"
            )
        total += got
    return total


class _Doctype(Exception):
    pass


class _RootReached(Exception):
    pass


def check_xml_prolog(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse an XML part whose prolog declares a DTD (entity expansion, external entities).

    Only the prolog is read: parsing stops at the root element's start tag."""
    parser = xml.parsers.expat.ParserCreate()

    def doctype(*_):
        raise _Doctype

    def start(*_):
        raise _RootReached

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = start
    read = 0
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(16384)
                if not chunk:
                    parser.Parse(b"", True)
                    break
                read += len(chunk)
                parser.Parse(chunk, False)
                if read > MAX_PROLOG_BYTES:
                    raise UntrustedFileError(f"文件“{path.name}”的部件“{info.filename}”开头异常（超过1MB仍无内容），拒绝打开")
    except _Doctype:
        raise UntrustedFileError(
            f"文件“{path.name}”的部件“{info.filename}”含有 DTD/实体声明（可能是 XML 炸弹或外部实体攻击），拒绝打开"
        ) from None
    except _RootReached:
        return
    except xml.parsers.expat.ExpatError as exc:
        raise UntrustedFileError(f"文件“{path.name}”的部件“{info.filename}”不是合法的 XML（{exc}），文件已损坏") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise UntrustedFileError(f"文件“{path.name}”的部件“{info.filename}”无法解压（{exc}），文件已损坏") from None


def _is_xml_part(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """XML by name, or by content: openpyxl follows relationships whatever a part is called."""
    if info.filename.lower().endswith((".xml", ".rels", ".vml")):
        return True
    if info.file_size == 0:
        return False
    try:
        with zf.open(info) as fh:
            head = fh.read(64)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise UntrustedFileError(f"部件“{info.filename}”无法解压（{exc}），文件已损坏") from None
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if head.startswith(bom):
            return True
    return head.lstrip(b" \t\r\n").startswith(b"<")


# ---------------------------------------------------------------------------------------------
# opening
# ---------------------------------------------------------------------------------------------


def inspect_package(path, *, max_bytes: int = MAX_FILE_BYTES) -> OpenReport:
    """All checks that run before openpyxl parses anything; returns what will be ignored."""
    path = Path(path)
    check_file_size(path, max_bytes)
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise UntrustedFileError(f"文件“{path.name}”是旧版 .xls 格式或加密工作簿，请用 Excel/WPS 另存为 .xlsx（不加密码）后再报送")
    if not magic.startswith(b"PK"):
        raise UntrustedFileError(f"文件“{path.name}”不是 Excel 工作簿（.xlsx/.xlsm）")
    report = OpenReport(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = check_zip(path, zf)
            for info in infos:
                if _is_xml_part(zf, info):
                    check_xml_prolog(path, zf, info)
            count_inflated(path, zf, infos)
    except zipfile.BadZipFile:
        raise UntrustedFileError(f"文件“{path.name}”不是有效的 Excel 工作簿（zip 结构损坏）") from None
    kinds: list[str] = []
    for info in infos:
        for pattern, kind in _ACTIVE_PARTS:
            if pattern.search(info.filename):
                report.ignored_parts.append(info.filename)
                if kind not in kinds:
                    kinds.append(kind)
    if kinds:
        report.notes.append(f"文件含{'、'.join(kinds)}，均已忽略，未加载、未运行，只读取单元格数据")
    return report


def _defused_cause(exc: BaseException | None) -> DefusedXmlException | None:
    """The defusedxml refusal behind an exception (openpyxl wraps it in a ValueError), or None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DefusedXmlException):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def open_untrusted(path, *, max_bytes: int = MAX_FILE_BYTES, report: OpenReport | None = None,
                   read_only: bool = False, scan_formulas: bool = True) -> openpyxl.Workbook:
    """Open a returned workbook for reading values only.

    Raises :class:`UntrustedFileError` (Chinese message naming the file) when it is refused.
    The returned workbook has ``data_only`` values (cached formula results).  What was noticed
    (ignored macros, formula cells) is on ``wb.untrusted_report`` (an :class:`OpenReport`); pass
    ``report`` to receive it in an object of your own.  ``read_only=True``: openpyxl's streaming
    reader (rows are parsed as they are iterated; close the workbook when done), as collect reads.
    ``scan_formulas=False``: the formula cells are not scanned (``formulas`` stays empty), for a caller
    that reads them with the values (:meth:`xl_ecom.ooxml.package.Package.rows`'s ``formulas``).
    """
    path = Path(path)
    found = inspect_package(path, max_bytes=max_bytes)
    if report is not None:
        report.path, report.notes[:], report.ignored_parts[:] = found.path, found.notes, found.ignored_parts
        found = report
    try:
        # keep_vba=False: the VBA project is not even read; keep_links=False: external links dropped.
        wb = openpyxl.load_workbook(path, data_only=True, keep_vba=False, keep_links=False, rich_text=False, read_only=read_only)
        if scan_formulas:
            found.formulas = _formula_cells(path)
    except UntrustedFileError:
        raise
    except Exception as exc:  # openpyxl raises many kinds for broken packages; the clerk needs one sentence
        defused = _defused_cause(exc)
        if defused is not None:
            raise UntrustedFileError(
                f"文件“{path.name}”含有被禁止的 XML 结构（{type(defused).__name__}：DTD/实体声明，可能是 XML 炸弹或外部实体攻击），拒绝打开"
            ) from None
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UntrustedFileError(f"文件“{path.name}”无法读取，可能已损坏或不是 Excel 工作簿（{type(exc).__name__}：{first}）") from None
    wb.untrusted_report = found
    return wb


class _ZipParts(Mapping[str, bytes]):
    """The members of an open zip as a read-only mapping of parts (read on demand)."""

    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.names = set(zf.namelist())

    def __contains__(self, name) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> bytes:
        if name not in self.names:
            raise KeyError(name)
        return self.zf.read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _worksheet_parts(zf: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, worksheet part) in workbook order (:func:`xl_ecom.ooxml.workbook.sheets`)."""
    from xl_ecom.ooxml import workbook
    from xl_ecom.ooxml.namespaces import REL_WORKSHEET

    parts = _ZipParts(zf)
    try:
        main = workbook.find_main_part(parts)
        if main not in parts:
            return []
        sheets = workbook.sheets(parts, main)
    except (workbook.WorkbookPartError, KeyError):
        return []
    return [(s.name, s.part) for s in sheets if s.rel_type == REL_WORKSHEET and s.part in parts]


def _scan_formulas_lxml(fh) -> dict[str, str] | None:
    """A1 ref -> formula text for every ``<f>`` in one worksheet part, by lxml's iterparse (in C,
    entities never resolved, no network; the prolog scan has already refused any DTD).  Returns
    None when a ``<c>`` holding a formula has no ``r`` attribute (the slower scan then counts
    positions)."""
    from lxml import etree

    from xl_ecom.ooxml.namespaces import MAIN as MAIN_NS

    f_tag, row_tag = f"{{{MAIN_NS}}}f", f"{{{MAIN_NS}}}row"
    found: dict[str, str] = {}
    shared: dict[str, tuple[str, str]] = {}
    for _event, el in etree.iterparse(fh, events=("end",), tag=(f_tag, row_tag), resolve_entities=False,
                                      no_network=True, load_dtd=False, huge_tree=False):
        if el.tag == row_tag:
            el.clear()
            parent = el.getparent()
            while el.getprevious() is not None:
                del parent[0]
            continue
        ref = el.getparent().get("r")
        if not ref:
            return None
        text = formula_of(el.text or "", el.get("t"), el.get("si", ""), ref, shared)
        found[ref] = "=" + text if text else "=（公式）"
    return found


def _scan_formulas(fh) -> dict[str, str]:
    """A1 ref -> formula text for every ``<f>`` in one worksheet part (streaming, C parser)."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    found: dict[str, str] = {}
    shared: dict[str, tuple[str, str]] = {}
    state = {"row": 0, "col": 0, "ref": "", "f": None, "text": []}

    def start(name, attrs):
        local = name.rpartition("}")[2]
        if local == "row":
            state["row"] = int(attrs.get("r", state["row"] + 1))
            state["col"] = 0
        elif local == "c":
            ref = attrs.get("r")
            if ref:
                letters, row = coordinate_from_string(ref)
                state["col"], state["row"] = column_index_from_string(letters), row
            else:
                state["col"] += 1
                ref = f"{get_column_letter(state['col'])}{state['row']}"
            state["ref"] = ref
        elif local == "f":
            state["f"] = attrs
            state["text"] = []

    def chars(data):
        if state["f"] is not None:
            state["text"].append(data)

    def end(name):
        if state["f"] is None or name.rpartition("}")[2] != "f":
            return
        attrs, text, ref = state["f"], "".join(state["text"]), state["ref"]
        state["f"] = None
        text = formula_of(text, attrs.get("t"), attrs.get("si", ""), ref, shared)
        found[ref] = "=" + text if text else "=（公式）"

    parser.StartElementHandler = start
    parser.CharacterDataHandler = chars
    parser.EndElementHandler = end
    parser.ParseFile(fh)
    return found


def _formula_cells(path: Path) -> dict[str, dict[str, str]]:
    """Every formula cell by sheet (formulas in returned files are reported, never trusted)."""
    out: dict[str, dict[str, str]] = {}
    with zipfile.ZipFile(path) as zf:
        for name, part in _worksheet_parts(zf):
            with zf.open(part) as fh:
                cells = _scan_formulas_lxml(fh)
            if cells is None:
                with zf.open(part) as fh:
                    cells = _scan_formulas(fh)
            if cells:
                out[name] = cells
    return out


# ---------------------------------------------------------------------------------------------
# writing text safely
# ---------------------------------------------------------------------------------------------


def safe_text(value):
    """``value`` made safe where the cell type cannot be chosen (xlwings ``range.value``, CSV):
    formula-like text gets Excel's quote prefix ``'`` (:func:`xl_ecom.common.textsafe.neutralise`)."""
    return neutralise(value)


def clean_text(value: str) -> str:
    """Text without the control characters XML cannot hold."""
    return ILLEGAL_CHARACTERS_RE.sub("", value)


def write_cell_value(cell, value):
    """Store ``value`` in an openpyxl cell; text is always a text cell, never a formula.

    openpyxl turns any string beginning with '=' into a formula; here the cell is forced to the
    string type, and formula-like text also gets the quote prefix (Excel's leading apostrophe),
    so editing it in Excel keeps it text.  Returns the value stored (control characters that XML
    cannot hold are removed)."""
    if isinstance(value, str):
        text = clean_text(value)
        cell.value = text
        cell.data_type = "s"
        if is_formula_like(text):
            cell.quotePrefix = True
        return text
    cell.value = value
    return value


# ---------------------------------------------------------------------------------------------
# replacing a file the clerk works on
# ---------------------------------------------------------------------------------------------


def lock_files(path) -> list[Path]:
    """Lock files present beside ``path``: Excel/WPS ``~$name`` (Excel shortens long names),
    LibreOffice ``.~lock.name#``."""
    path = Path(path)
    name = path.name
    candidates = {f"~${name}", f"~${name[1:]}", f"~${name[2:]}", f".~lock.{name}#"}
    return [path.with_name(c) for c in sorted(candidates) if path.with_name(c).exists()]


def ensure_not_open(path) -> None:
    path = Path(path)
    found = lock_files(path)
    if found:
        raise FileBusyError(
            f"“{path.name}”正在被 Excel 或 WPS 打开（发现锁定文件“{found[0].name}”），请先保存并关闭该工作簿再执行；"
            "如确认没有打开，可删除该锁定文件后重试"
        )


def backup_path(path: Path, when: dt.datetime | None = None) -> Path:
    when = when or dt.datetime.now()
    stamp = when.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.stem}.备份{stamp}{path.suffix}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.备份{stamp}-{n}{path.suffix}")
        n += 1
    return candidate


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` as the user's umask would make a newly created file."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


#: temporary files of the atomic writer: ``.xl-ecom-<host>-<pid>-<random><suffix>.tmp`` beside the target
TEMP_PREFIX = ".xl-ecom-"
_TEMP_NAME = re.compile(r"^\.xl-ecom-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-.*\.tmp$")
#: a temporary file another computer left (its process cannot be asked) is stale after this long
FOREIGN_TEMP_AGE = dt.timedelta(days=1)


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _temp_file(folder: Path, suffix: str) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-", suffix=suffix + ".tmp", dir=folder)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a writer killed mid-write left in ``folder`` (its process is gone,
    or, from another computer, it is older than a day); the paths removed."""
    removed: list[Path] = []
    host, now = _host_tag(), dt.datetime.now().timestamp()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if m["host"] == host:
                stale = not pid_alive(int(m["pid"]))
            else:
                stale = now - entry.stat().st_mtime > FOREIGN_TEMP_AGE.total_seconds()
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def write_new(path: Path, data: bytes, mode: int | None = None) -> None:
    """``data`` at ``path`` whole or not at all: written to a temporary file, fsynced, renamed.
    ``mode``: the file's permissions (default: as the user's umask makes a new file)."""
    fd, tmp = _temp_file(path.parent, path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:  # mkstemp makes 0600
            os.chmod(tmp, umask_mode() if mode is None else mode)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomically(path, data: bytes, *, backup: bool = True) -> Path | None:
    """Replace ``path`` with ``data``: temporary file in the same folder, fsync, ``os.replace``.

    The previous file (if any) is first copied to ``<stem>.备份YYYYmmdd-HHMMSS<suffix>`` beside it, by
    the same temporary-file-and-rename, so a full disk or a kill never leaves a truncated backup; that
    path is returned.  Temporary files an earlier writer left when it was killed are removed first.
    Refuses (:class:`FileBusyError`) when the file is open in Excel."""
    path = Path(path)
    ensure_not_open(path)
    remove_stale_temporaries(path.parent)
    saved = None
    # keep the old file's mode, or the user's umask for a new file
    mode = path.stat().st_mode & 0o777 if path.exists() else umask_mode()
    if backup and path.exists():
        saved = backup_path(path)
        _copy_exact(path, saved)
    write_new(path, data, mode)
    return saved


def _copy_exact(src: Path, dst: Path) -> None:
    """A copy of ``src`` at ``dst`` (which must not exist yet), whole or not at all."""
    if dst.exists():
        raise FileExistsError(dst)
    write_new(dst, src.read_bytes(), src.stat().st_mode & 0o777)
