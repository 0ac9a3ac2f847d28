"""The ribbon: customUI14.xml against Microsoft's schema, and its callbacks in Ribbon.bas."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import xmlschema
from defusedxml import ElementTree as SafeET

from xl_ecom.ooxml import vba, xlsm

# Microsoft's customUI14.xsd, a copy of ../shared/schemas/customui14.xsd kept in the repository.
SCHEMA = Path(__file__).resolve().parent / "fixtures" / "customui14.xsd"
NS = {"ui": xlsm.CUSTOM_UI_NAMESPACE}

#: label -> Python entry point in xl_ecom.frontends.macros, in ribbon order (issue 3).
BUTTONS = {
    "刷新": "refresh",
    "生成部门任务表": "make_departments",
    "生成县区工作簿": "make_counties",
    "汇总县区报表": "collect",
    "校验数据": "validate",
    "新建轮次": "new_round",
    "发送邮件": "send_mail",
    "报送情况": "status",
    "催报": "remind",
    "退回": "return_submissions",
    "进展通报": "report",
}


@pytest.fixture(scope="module")
def schema():
    assert SCHEMA.is_file(), f"the customUI14 schema is missing: {SCHEMA}"
    return xmlschema.XMLSchema(str(SCHEMA))


@pytest.fixture(scope="module")
def ribbon():
    return SafeET.fromstring(xlsm.ribbon_xml())


@pytest.fixture(scope="module")
def ribbon_code():
    return {m.name: m for m in vba.template_modules()}["Ribbon"].code


def buttons(ribbon):
    return ribbon.findall(".//ui:tab/ui:group/ui:button", NS)


def test_ribbon_validates_against_customui14_schema(schema):
    schema.validate(str(xlsm.RIBBON_TEMPLATE))
    assert schema.is_valid(xlsm.ribbon_xml().decode("utf-8"))


def test_schema_check_can_fail(schema):
    text = xlsm.ribbon_xml().decode("utf-8")
    assert not schema.is_valid(text.replace('size="large"', 'size="huge"', 1))
    assert not schema.is_valid(text.replace("<button ", "<button colour=\"red\" ", 1))


def test_tab_and_large_buttons(ribbon):
    tabs = ribbon.findall(".//ui:tabs/ui:tab", NS)
    assert [tab.get("label") for tab in tabs] == ["农村电商"]
    found = buttons(ribbon)
    assert [b.get("label") for b in found] == list(BUTTONS)
    for button in found:
        assert button.get("size") == "large"
        assert re.fullmatch(r"[A-Za-z]+", button.get("imageMso") or "")
        for attribute in ("screentip", "supertip"):
            text = button.get(attribute) or ""
            assert re.search(r"[\u4e00-\u9fff]", text), (button.get("label"), attribute)
    assert len({b.get("id") for b in found}) == len(found)


def test_every_onaction_is_a_ribbon_callback_running_its_entry(ribbon, ribbon_code):
    for button in buttons(ribbon):
        sub = button.get("onAction")
        entry = BUTTONS[button.get("label")]
        body = re.search(rf"^Public Sub {sub}\(control As IRibbonControl\)\r\n(.*?)^End Sub", ribbon_code, re.M | re.S)
        assert body, sub
        assert body.group(1).strip() == f'RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.{entry}()"'
    declared = re.findall(r"^Public Sub (\w+)\(control As IRibbonControl\)", ribbon_code, re.M)
    assert sorted(declared) == sorted(b.get("onAction") for b in buttons(ribbon))


def test_callbacks_run_in_a_vba_interpreter(ribbon, ribbon_code):
    """Each onAction, called the way the ribbon calls it (Application.Run with the
    control), by pyOpenVBA's VBA interpreter; RunPython is recorded instead of
    starting Python."""
    from pyopenvba.apps.excel import ExcelApplication

    app = ExcelApplication()
    app.add_workbook()
    app.add_module(
        "Public commands As String\n"
        "Public Function RunPython(ByVal PythonCommand As String)\n"
        '    commands = commands & PythonCommand & "|"\n'
        "End Function\n"
        "Public Function Commands() As String\n    Commands = commands\nEnd Function\n"
        "Public Sub Press(ByVal callback As String)\n    Application.Run callback, Nothing\nEnd Sub\n",
        name="xlwings",
    )
    app.add_module(ribbon_code.replace("\r\n", "\n"), name="Ribbon")
    for button in buttons(ribbon):
        app.run("Press", button.get("onAction"))
    expected = "".join(f"import xl_ecom.frontends.macros; xl_ecom.frontends.macros.{entry}()|" for entry in BUTTONS.values())
    assert app.evaluate("Commands()") == expected


def test_macro_entry_points_exist():
    """The Python side of every button (xl_ecom.frontends.macros, the ribbon-macro issue)."""
    macros = importlib.import_module("xl_ecom.frontends.macros")
    for entry in BUTTONS.values():
        assert callable(getattr(macros, entry, None)), entry


def test_ribbon_is_utf8_chinese_and_vba_is_ascii(ribbon_code):
    raw = xlsm.ribbon_xml()
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"')
    assert "农村电商".encode() in raw
    assert ribbon_code.isascii()


#: the reporting cycle's and the bulletin's buttons (issues 10, 11): id, onAction, group label
CYCLE_BUTTONS = {
    "新建轮次": ("xlEcomNewRound", "RibbonNewRound", "报送"),
    "报送情况": ("xlEcomStatus", "RibbonStatus", "报送"),
    "催报": ("xlEcomRemind", "RibbonRemind", "报送"),
    "退回": ("xlEcomReturn", "RibbonReturn", "报送"),
    "进展通报": ("xlEcomReport", "RibbonReport", "通报"),
}


def test_cycle_and_bulletin_buttons_in_their_groups(ribbon):
    groups = {b.get("id"): g.get("label") for g in ribbon.findall(".//ui:tab/ui:group", NS)
              for b in g.findall("ui:button", NS)}
    found = {b.get("label"): b for b in buttons(ribbon)}
    for label, (ident, action, group) in CYCLE_BUTTONS.items():
        button = found[label]
        assert (button.get("id"), button.get("onAction"), groups[button.get("id")]) == (ident, action, group)
    assert groups["xlEcomSendMail"] == "报送"  # the first mail stays with the cycle's other mail


def test_keytips_unique_within_the_tab(ribbon):
    tab = ribbon.find(".//ui:tabs/ui:tab", NS)
    assert tab.get("keytip") == "ZN"  # Excel's own tabs use single letters and J…; Z… is free
    tips = [b.get("keytip") for b in buttons(ribbon)]
    assert all(t and re.fullmatch(r"[A-Z]{1,2}", t) for t in tips), tips
    assert len(set(tips)) == len(tips), tips
