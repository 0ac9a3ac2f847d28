"""Issue #8 item 5: one error family, one Problem type, one Progress protocol, one neutraliser."""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import pkgutil

import pytest

import xl_ecom
from xl_ecom.common import problems, textsafe
from xl_ecom.common.errors import XlEcomError
from xl_ecom.ooxml import safeio
from xl_ecom.policy import check
from xl_ecom.workflows import mail, refresh, validate

FORMULA_LIKE = ["=1+1", "  =1", "＝SUM(A1)", "+1", "-1", "@x", "\t=1", "\r=1", "\u3000＋1", "－1", "＠x"]
PLAIN = ["寿县", "1+1", "a=b", "100", "", "邮箱 a@b.cn"]
NOT_TEXT = [1, -1, 0.5, None, True]


def _exception_classes():
    for info in pkgutil.walk_packages(xl_ecom.__path__, "xl_ecom."):
        if info.name == "xl_ecom.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                yield info.name, name, obj


def test_every_public_exception_is_an_xl_ecom_error():
    found = list(_exception_classes())
    public = [(m, n, c) for m, n, c in found if not n.startswith("_") and not issubclass(c, Warning)]
    names = {n for _, n, _ in public}
    assert {"MailError", "SettingsError", "ContactsError", "RefreshError", "CollectError"} <= names
    outside = [f"{m}.{n}" for m, n, c in public if not issubclass(c, XlEcomError)]
    assert outside == []


def test_settings_and_contacts_errors_stay_value_errors_and_speak_chinese():
    from xl_ecom.workflows.settings import ContactsError, SettingsError, settings_from_rows

    assert issubclass(SettingsError, ValueError) and issubclass(ContactsError, ValueError)
    with pytest.raises(SettingsError) as exc:
        settings_from_rows([["SMTP端口", "七"]])
    assert isinstance(exc.value, XlEcomError) and "七" in str(exc.value)


@pytest.mark.parametrize("text", FORMULA_LIKE)
def test_formula_like_text_is_neutralised(text):
    assert textsafe.is_formula_like(text)
    assert textsafe.neutralise(text) == "'" + text
    assert textsafe.unneutralise(textsafe.neutralise(text)) == text
    assert safeio.safe_text(text) == "'" + text


@pytest.mark.parametrize("value", PLAIN + NOT_TEXT)
def test_plain_text_and_numbers_are_unchanged(value):
    assert not textsafe.is_formula_like(value)
    assert textsafe.neutralise(value) == value
    assert textsafe.unneutralise(value) == value


@pytest.mark.parametrize("text", FORMULA_LIKE)
def test_mail_send_log_uses_the_same_neutraliser(tmp_path, text):
    path = tmp_path / "发送记录.csv"
    record = mail.SendRecord("2026-12-02 09:00:00", text, "a@b.cn", text, "ab" * 32, mail.RESULT_SENT, text)
    with mail.CsvLog(path) as log:
        log.append(record)
    raw = path.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(raw, newline="")))[1:]
    assert textsafe.neutralise(text) in raw
    assert all(not textsafe.is_formula_like(cell) for row in rows for cell in row)
    assert mail.read_log(path) == [record]


def test_validate_warns_through_the_same_neutraliser():
    from xl_ecom.workflows.tables import table

    col = next(c for c in table("T_SALES").columns if c.kind == "text")
    for text in FORMULA_LIKE:
        _, issues = validate.check_value(col, text, ())
        assert any("以公式符号开头" in m for _, m in issues), text
    _, issues = validate.check_value(col, "寿县豆制品", ())
    assert not any("以公式符号开头" in m for _, m in issues)


def test_one_problem_type():
    assert validate.Problem is problems.Problem is refresh.Problem is mail.Problem
    finding = check.Finding(check.WARNING, "目标T1", "没有责任单位")
    assert isinstance(finding, problems.Problem) and finding.subject == "目标T1"
    assert str(finding) == "[警告] 目标T1：没有责任单位"
    p = problems.Problem("企业销售", "D4", "不能为负数")
    assert p.is_error and str(p) == "[错误] 工作表“企业销售”单元格 D4：不能为负数"
    with pytest.raises(ValueError):
        problems.Problem("企业销售", "D4", "x", "严重")


def test_one_progress_protocol():
    from xl_ecom.common.progress import Progress, status_text
    from xl_ecom.workflows import counties, departments

    assert refresh.Progress is departments.Progress is counties.Progress is mail.Progress is Progress
    assert status_text("生成县区工作簿：寿县", 2, 7) == "生成县区工作簿：寿县（2/7）"
    assert status_text("检查数据……") == "检查数据……"
