"""市级工作簿“设置”表和“通讯录”表的布局与读取。

工作簿生成器用本模块的常量写出这两张表；邮件、命令行和功能区按钮用本模块的函数读回。
读取函数只依赖 openpyxl（不导入 xlwings）；从 Excel 里打开的工作簿由 xlwings 层取出
单元格的值（行的列表），再交给 ``settings_from_rows`` / ``contacts_from_rows``。

“设置”表中永远没有密码：SMTP 密码只来自环境变量 ``XL_ECOM_SMTP_PASSWORD`` 或系统钥匙串。
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from xl_ecom.common.errors import InputError
from xl_ecom.workflows import layout

__all__ = [
    "SETTINGS_SHEET",
    "SETTINGS_HEADERS",
    "SETTINGS_ROWS",
    "SETTINGS_DEFAULTS",
    "SECURITY_CHOICES",
    "DEFAULT_PORTS",
    "CONTACTS_SHEET",
    "CONTACT_HEADERS",
    "CONTACT_CATEGORIES",
    "DEPARTMENT",
    "COUNTY",
    "DEPARTMENT_SUBDIR",
    "COUNTY_SUBDIR",
    "Contact",
    "SettingsError",
    "ContactsError",
    "PasswordInSettingsWarning",
    "read_settings",
    "settings_from_rows",
    "read_contacts",
    "read_contacts_csv",
    "contacts_from_rows",
    "split_addresses",
    "normalize_category",
    "smtp_port",
    "output_dir",
    "unit_file",
    "format_date",
]

# ---------------------------------------------------------------------------
# 设置
# ---------------------------------------------------------------------------

SETTINGS_SHEET = layout.SHEET_SETTINGS
SETTINGS_HEADERS = ("项目", "值", "说明")

#: 加密方式的取值
SECURITY_CHOICES = ("无", "SSL", "STARTTLS")
#: “SMTP端口”留空时按加密方式取的端口
DEFAULT_PORTS = {"无": 25, "SSL": 465, "STARTTLS": 587}

#: (项目, 默认值, 说明)；工作簿生成器逐行写出，读不到的项目取这里的默认值。
SETTINGS_ROWS: list[tuple[str, Any, str]] = [
    ("政策日期", _dt.date(2020, 12, 31),
     "规则适用的基准日期（方案目标期限“到2020年底”）"),
    ("输出文件夹", "输出",
     "生成的部门任务表和县区工作簿存放的文件夹；相对路径以本工作簿所在文件夹为准"),
    ("报送截止日期", None,
     "各单位报送落实情况的截止日期，写入邮件正文"),
    ("发件人", "淮南市商务局",
     "邮件发件人名称和正文署名"),
    ("发件人邮箱", "",
     "发送邮件用的邮箱地址"),
    ("SMTP服务器", "",
     "发件服务器地址，例如 smtp.163.com"),
    ("SMTP端口", None,
     "留空则按加密方式取默认端口：SSL 465，STARTTLS 587，无 25"),
    ("SMTP用户名", "",
     "登录发件服务器的用户名，一般与发件人邮箱相同；留空则不登录。"
     "密码不写在工作簿里：请设置环境变量 XL_ECOM_SMTP_PASSWORD，或保存到系统钥匙串"),
    ("加密方式", "SSL",
     "无 / SSL / STARTTLS"),
]

SETTINGS_DEFAULTS: dict[str, Any] = {key: default for key, default, _ in SETTINGS_ROWS}

_DATE_KEYS = {"政策日期", "报送截止日期"}
_PORT_KEYS = {"SMTP端口"}
_CHOICE_KEYS = {"加密方式"}
_PASSWORD_KEY = re.compile(r"密码|口令|授权码|password|passwd|pwd", re.IGNORECASE)


class SettingsError(InputError):
    """“设置”表里的值无效；消息是给用户看的中文。"""


class PasswordInSettingsWarning(UserWarning):
    """“设置”表里出现了密码行：它被忽略，不会被读取、使用或记录。"""


def settings_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """把“设置”表的行（第一列项目、第二列值）转成设置字典。

    表头行、空行跳过；没有的项目取默认值；日期、端口、加密方式转成统一的类型：
    日期为 ``datetime.date`` 或 None，端口为 int 或 None，加密方式为 无/SSL/STARTTLS。
    看起来像密码的行被忽略并发出 ``PasswordInSettingsWarning``。
    值无效时抛出 ``SettingsError``，消息写明项目和值。
    """
    result = dict(SETTINGS_DEFAULTS)
    for row in rows:
        if row is None:
            continue
        row = list(row)
        if not row:
            continue
        key = _cell_text(row[0])
        if not key or key == SETTINGS_HEADERS[0]:
            continue
        if _PASSWORD_KEY.search(key):
            warnings.warn(
                f"“{SETTINGS_SHEET}”表中的“{key}”一行已忽略：密码不能写在工作簿里，"
                "请删除这一行，改用环境变量 XL_ECOM_SMTP_PASSWORD 或系统钥匙串。",
                PasswordInSettingsWarning,
                stacklevel=2,
            )
            continue
        value = row[1] if len(row) > 1 else None
        result[key] = _convert_setting(key, value)
    return result


def read_settings(source: Any) -> dict[str, Any]:
    """读取工作簿的“设置”表。

    ``source`` 是 .xlsx/.xlsm 文件路径或 openpyxl 的 Workbook。没有“设置”表时全部取默认值。
    """
    wb, close = _open_workbook(source)
    try:
        if SETTINGS_SHEET not in wb.sheetnames:
            return dict(SETTINGS_DEFAULTS)
        ws = wb[SETTINGS_SHEET]
        rows = [row[:2] for row in ws.iter_rows(values_only=True)]
    finally:
        if close:
            wb.close()
    return settings_from_rows(rows)


def smtp_port(settings: dict[str, Any]) -> int:
    """设置中的端口；留空时按加密方式取默认端口。"""
    port = settings.get("SMTP端口")
    if port:
        return int(port)
    return DEFAULT_PORTS[settings.get("加密方式") or SETTINGS_DEFAULTS["加密方式"]]


def _convert_setting(key: str, value: Any) -> Any:
    if _is_blank(value):
        return SETTINGS_DEFAULTS.get(key)
    if key in _DATE_KEYS:
        return _to_date(key, value)
    if key in _PORT_KEYS:
        return _to_port(key, value)
    if key in _CHOICE_KEYS:
        return _to_security(key, value)
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value
    return _cell_text(value)


def _to_date(key: str, value: Any) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        # 没有设日期格式的单元格里是 Excel 序列号
        try:
            from openpyxl.utils.datetime import from_excel

            converted = from_excel(float(value))
        except (ValueError, OverflowError, TypeError):
            converted = None
        if isinstance(converted, _dt.datetime) and 1900 < converted.year < 2200:
            return converted.date()
    text = _cell_text(value)
    m = re.fullmatch(r"\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*", text)
    if m:
        try:
            return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            pass
    raise SettingsError(
        f"“{SETTINGS_SHEET}”表中“{key}”的值“{text}”不是有效日期，请写成 2020-12-31 这样的格式。"
    )


def _to_port(key: str, value: Any) -> int:
    text = _cell_text(value)
    try:
        number = Decimal(text)
    except ArithmeticError:
        number = None
    if number is None or number != number.to_integral_value() or not 1 <= number <= 65535:
        raise SettingsError(
            f"“{SETTINGS_SHEET}”表中“{key}”的值“{text}”不是有效端口号，应为 1 到 65535 之间的整数。"
        )
    return int(number)


def _to_security(key: str, value: Any) -> str:
    text = _cell_text(value)
    upper = text.upper()
    for choice in SECURITY_CHOICES:
        if upper == choice.upper():
            return choice
    if upper in ("NONE", "不加密"):
        return "无"
    raise SettingsError(
        f"“{SETTINGS_SHEET}”表中“{key}”的值“{text}”无效，应为 {' / '.join(SECURITY_CHOICES)} 之一。"
    )


# ---------------------------------------------------------------------------
# 通讯录
# ---------------------------------------------------------------------------

CONTACTS_SHEET = layout.SHEET_CONTACTS
CONTACT_HEADERS = ("单位", "类别", "联系人", "邮箱", "电话")
DEPARTMENT = "部门"
COUNTY = "县区"
CONTACT_CATEGORIES = (DEPARTMENT, COUNTY)

#: 输出文件夹下的两个子文件夹：部门任务表/<单位>.xlsx 和 县区工作簿/<县区>.xlsx
DEPARTMENT_SUBDIR = "部门任务表"
COUNTY_SUBDIR = "县区工作簿"
_SUBDIRS = {DEPARTMENT: DEPARTMENT_SUBDIR, COUNTY: COUNTY_SUBDIR}

_ADDRESS_SEPARATORS = re.compile(r"[;；,，、\s]+")
_CATEGORY_ALIASES = {
    "部门": DEPARTMENT,
    "市直部门": DEPARTMENT,
    "县区": COUNTY,
    "县": COUNTY,
    "区": COUNTY,
    "县(区)": COUNTY,
    "县（区）": COUNTY,
}


class ContactsError(InputError):
    """通讯录无法读取；消息是给用户看的中文。"""


@dataclass(frozen=True)
class Contact:
    """通讯录的一行。

    ``addresses`` 是按分隔符拆开的原样地址（尚未校验）；``category`` 为 部门、县区，
    未填时为空串（由发送时按附件文件判断），填了别的值则原样保留以便报告。
    ``source`` 说明这一行来自哪里，例如“通讯录 第5行”，用于提示。
    """

    unit: str
    category: str = ""
    person: str = ""
    addresses: tuple[str, ...] = ()
    phone: str = ""
    source: str = ""


def split_addresses(text: Any) -> tuple[str, ...]:
    """把一个单元格里的多个邮箱拆开：分隔符为 ; ； , ， 、 和空白。"""
    if _is_blank(text):
        return ()
    return tuple(part for part in _ADDRESS_SEPARATORS.split(_cell_text(text)) if part)


def normalize_category(value: Any) -> str:
    """把 类别 规范为 部门 / 县区；空值为空串；无法识别的值原样返回。"""
    text = _cell_text(value).replace(" ", "")
    return _CATEGORY_ALIASES.get(text, text)


def contacts_from_rows(rows: Iterable[Sequence[Any]], source: str = CONTACTS_SHEET) -> list[Contact]:
    """把通讯录的行（含表头行）转成 Contact 列表。

    表头行是第一行同时含“单位”和“邮箱”的行，列按表头名称找，顺序不限；
    “类别”“联系人”“电话”可以没有。单位为空的行跳过。
    """
    header_map: dict[str, int] | None = None
    contacts: list[Contact] = []
    for number, row in enumerate(rows, start=1):
        cells = [_cell_text(c) for c in (row or ())]
        if header_map is None:
            if "单位" in cells and "邮箱" in cells:
                header_map = {}
                for index, name in enumerate(cells):
                    if name and name not in header_map:
                        header_map[name] = index
            continue

        def get(name: str, _row=row, _header_map=header_map) -> Any:
            index = _header_map.get(name)
            if index is None or _row is None or index >= len(_row):
                return None
            return _row[index]

        unit = _single_line(_cell_text(get("单位")))
        if not unit:
            continue
        contacts.append(
            Contact(
                unit=unit,
                category=normalize_category(get("类别")),
                person=_single_line(_cell_text(get("联系人"))),
                addresses=split_addresses(get("邮箱")),
                phone=_cell_text(get("电话")),
                source=f"{source} 第{number}行",
            )
        )
    if header_map is None:
        raise ContactsError(f"{source}里找不到表头行：需要含有“单位”和“邮箱”两列。")
    return contacts


def read_contacts(source: Any) -> list[Contact]:
    """读取工作簿的“通讯录”表（路径或 openpyxl Workbook）。"""
    wb, close = _open_workbook(source)
    try:
        if CONTACTS_SHEET not in wb.sheetnames:
            raise ContactsError(
                f"工作簿中没有“{CONTACTS_SHEET}”表：请填写通讯录（列：{'、'.join(CONTACT_HEADERS)}），"
                "或用 --contacts 指定通讯录 CSV 文件。"
            )
        rows = list(wb[CONTACTS_SHEET].iter_rows(values_only=True))
    finally:
        if close:
            wb.close()
    return contacts_from_rows(rows, source=f"“{CONTACTS_SHEET}”表")


def read_contacts_csv(path: Any) -> list[Contact]:
    """读取通讯录 CSV（列：单位,联系人,邮箱；可另有 类别、电话）。

    接受 Excel 存出的 UTF-8（带或不带 BOM）、GBK/GB18030 和 UTF-16（“Unicode 文本”，制表符分隔）。
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ContactsError(f"找不到通讯录文件：{path}") from None
    except OSError as exc:
        raise ContactsError(f"无法读取通讯录文件 {path}：{exc.strerror or exc}") from None
    delimiter = ","
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
        delimiter = "\t"
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("gb18030")
            except UnicodeDecodeError:
                raise ContactsError(
                    f"通讯录文件 {path} 的编码无法识别：请在 Excel 中另存为“CSV UTF-8（逗号分隔）”。"
                ) from None
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    contacts = contacts_from_rows(rows, source=f"通讯录文件 {path.name}")
    return contacts


# ---------------------------------------------------------------------------
# 输出文件夹
# ---------------------------------------------------------------------------


def output_dir(settings: dict[str, Any], workbook_path: Any) -> Path:
    """输出文件夹：设置“输出文件夹”，相对路径以工作簿所在文件夹为准。"""
    folder = Path(str(settings.get("输出文件夹") or SETTINGS_DEFAULTS["输出文件夹"]))
    if folder.is_absolute():
        return folder
    return Path(workbook_path).resolve().parent / folder


def unit_file(out_dir: Any, category: str, unit: str) -> Path:
    """某单位的生成文件：部门任务表/<单位>.xlsx 或 县区工作簿/<县区>.xlsx。"""
    try:
        subdir = _SUBDIRS[category]
    except KeyError:
        raise ValueError(f"类别“{category}”无效，应为 {' 或 '.join(CONTACT_CATEGORIES)}。") from None
    return Path(out_dir) / subdir / f"{unit}.xlsx"


def format_date(value: Any) -> str:
    """日期写成中文格式：2020年12月31日；空值为空串。"""
    if value is None or value == "":
        return ""
    if isinstance(value, _dt.datetime):
        value = value.date()
    if isinstance(value, _dt.date):
        return f"{value.year}年{value.month}月{value.day}日"
    return str(value)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _cell_text(value: Any) -> str:
    """单元格值转文本：去掉首尾空白；整数值的浮点数（xlwings 读数字的方式）不带 .0。"""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ")
    return str(value).strip()


def _single_line(text: str) -> str:
    """名称里的换行、制表等控制字符换成空格。"""
    return re.sub(r"\s+", " ", "".join(ch if ch.isprintable() else " " for ch in text)).strip()


def _open_workbook(source: Any):
    """返回 (workbook, 是否需要关闭)。"""
    if hasattr(source, "sheetnames"):
        return source, False
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(source)
    if not path.exists():
        raise SettingsError(f"找不到工作簿：{path}")
    try:
        return load_workbook(path, read_only=True, data_only=True), True
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise SettingsError(f"无法读取工作簿 {path}：不是有效的 Excel 文件（{type(exc).__name__}）。") from None
