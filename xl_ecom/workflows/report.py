"""进展通报 (``xl-ecom report WORKBOOK``): the round's progress bulletin, as .docx and PDF (issue 11).

The numbers are refresh's: the input tables are read and computed by :mod:`xl_ecom.workflows.refresh`
(awards per row, county and clause; annex progress per county; the text's targets).  The round's units
come from the reporting cycle (:func:`xl_ecom.workflows.cycle.compute_status`: overdue units, the latest
submission of each unit and its problems); the trend from round to round from the ledger's rounds.

Which data a round stands on:

* the current (newest) round, or a ledger without rounds: the city workbook's input tables (what refresh
  reads; collect rewrites them from the ledger's current rows);
* an earlier round (``--round``): the ledger's rows of that round, with carry-forward
  (:func:`xl_ecom.workflows.cycle.round_rows`);
* the trend: each earlier round from the ledger, the bulletin's own round as above.

Layout after GB/T 9704 where it applies: A4, margins 3.7 / 3.5 / 2.8 / 2.6 cm (top / bottom / left / right),
title in 小标宋 (fallbacks :data:`TITLE_FONTS`), body in 仿宋 三号 (16 pt, :data:`BODY_FONTS`), headings in
黑体 and 楷体, page numbers “— 1 —” in the footer (odd pages right, even pages left, one character in).  The
East Asian font name (``w:eastAsia``) is set on every style and run so Word and LibreOffice use the CJK
font.  The charts are matplotlib PNGs drawn with a Chinese font found by ``matplotlib.font_manager``.

The PDF is LibreOffice's (``soffice --headless --convert-to pdf``, with its own throw-away profile).  When
LibreOffice is missing or fails, the .docx is kept and the command ends with exit code 1.

The summary paragraph is the template ``templates/report/摘要.txt`` (``string.Template``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.resources import TEMPLATES_DIR
from xl_ecom.ledger import Ledger, Round, open_ledger
from xl_ecom.policy import Plan, load_plan
from xl_ecom.rules.money import describe
from xl_ecom.workflows import cycle, layout
from xl_ecom.workflows.settings import SETTINGS_SHEET, format_date, output_dir

__all__ = [
    "BODY_FONTS", "TITLE_FONTS", "HEADING_FONTS", "KAI_FONTS", "REPORT_TITLE", "SUBDIR", "ReportError", "Bulletin",
    "ReportResult", "TargetLine", "CountyLine", "TrendPoint", "OpenProblem", "bulletin_data", "summary_text",
    "write_docx", "docx_to_pdf", "write_report", "cmd_report", "add_cli", "yuan", "wan_yuan", "find_font",
]

REPORT_TITLE = "淮南市农村电商提质增效工作进展通报"
#: where the bulletin goes by default: <输出文件夹>/进展通报
SUBDIR = "进展通报"
SUMMARY_TEMPLATE = TEMPLATES_DIR / "report" / "摘要.txt"
SUMMARY_KEYS = ("截至", "目标数", "完成数", "滞后数", "滞后说明", "其余说明", "奖补万元", "奖补元", "笔数", "报送说明")

#: font fallbacks, first installed wins (Windows names first, then macOS, then Debian's)
TITLE_FONTS = ("方正小标宋简体", "FZXiaoBiaoSong-B05S", "华文中宋", "STZhongsong", "SimSun", "宋体",
               "Noto Serif CJK SC", "Source Han Serif SC", "WenQuanYi Zen Hei")
BODY_FONTS = ("仿宋_GB2312", "FangSong_GB2312", "FangSong", "仿宋", "STFangsong", "华文仿宋",
              "Noto Serif CJK SC", "WenQuanYi Zen Hei")
HEADING_FONTS = ("黑体", "SimHei", "STHeiti", "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei")
KAI_FONTS = ("楷体_GB2312", "KaiTi_GB2312", "KaiTi", "楷体", "STKaiti", "Noto Serif CJK SC", "WenQuanYi Zen Hei")
PAGE_NUMBER_FONTS = ("宋体", "SimSun", "Noto Serif CJK SC", "WenQuanYi Zen Hei")
#: fonts matplotlib may draw Chinese with (the first installed)
CHART_FONTS = ("SimHei", "Microsoft YaHei", "FangSong", "SimSun", "PingFang SC", "STHeiti", "Noto Sans CJK SC",
               "Noto Serif CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei")

#: GB/T 9704: A4 and the margins (cm)
PAGE_CM = (21.0, 29.7)
MARGINS_CM = {"top": 3.7, "bottom": 3.5, "left": 2.8, "right": 2.6}
BODY_PT = 16  # 三号
TITLE_PT = 22  # 二号
TABLE_PT = 10.5  # 五号
PAGE_NUMBER_PT = 14  # 四号
LINE_PT = 28.95  # fixed line pitch: 22 lines in the 225 mm type area

_CENT = Decimal("0.01")


class _SummaryTemplate(Template):
    """Placeholders are Chinese words (``${截至}``), as in the mail templates."""

    flags = re.UNICODE
    idpattern = r"[^\W\d]\w*"


class ReportError(XlEcomError):
    """The bulletin cannot be written; the message is Chinese and names the value."""


# ----------------------------------------------------------------------------------------------- numbers


def yuan(cents: int) -> str:
    """Cents as yuan: two decimals, thousands separators (exact: the cents are already rounded half up)."""
    return f"{(Decimal(int(cents)) / 100).quantize(_CENT, rounding=ROUND_HALF_UP):,.2f}"


def wan_yuan(cents: int) -> str:
    """Cents as 万元, rounded half up to two decimals, thousands separators."""
    return f"{(Decimal(int(cents)) / 1_000_000).quantize(_CENT, rounding=ROUND_HALF_UP):,.2f}"


def _percent(rate: float | None) -> str:
    if rate is None:
        return "—"
    return f"{(Decimal(repr(rate)) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


@dataclass
class TargetLine:
    target_id: str
    clause: str
    text: str
    name: str
    target: str  # the target as worded, e.g. “3个以上”
    actual: str  # formatted, or “暂无数据”
    state: str  # 已完成 / 进度滞后 / 暂无数据 / 约数，不作判断
    met: bool | None
    note: str = ""


@dataclass
class CountyLine:
    county: str
    cells: list[tuple[int, Any]]  # (actual, target) per annex column
    rate: float | None  # Σ完成数 ÷ Σ目标任务数 over the annex columns
    rates: list[float | None]  # per annex column
    award_cents: int


@dataclass
class TrendPoint:
    label: str
    award_cents: int
    met: int
    source: str  # 工作簿 / 台账


@dataclass
class OpenProblem:
    unit: str
    file: str
    count: int
    reasons: list[str]


@dataclass
class Bulletin:
    """Everything the bulletin shows, computed; the writers only lay it out."""

    round_label: str
    issued: dt.date
    as_of: str  # 2020年10月
    on: dt.date  # the policy date the awards are computed at
    source: str
    issuer: str
    total_cents: int
    paid_rows: int
    targets: list[TargetLine]
    annex: list[dict]  # the annex columns (key, short, unit)
    counties: list[CountyLine]
    clauses: list[tuple[str, str, int]]  # (clause, rule names, cents)
    trend: list[TrendPoint]
    status: cycle.StatusReport
    overdue: list[cycle.UnitStatus]
    problems: list[OpenProblem]
    summary: str = ""

    @property
    def met(self) -> list[TargetLine]:
        return [t for t in self.targets if t.met is True]

    @property
    def behind(self) -> list[TargetLine]:
        return [t for t in self.targets if t.met is False]


def _round_month(label: str, issued: dt.date) -> str:
    m = re.fullmatch(r"\s*(\d{4})[-年./](\d{1,2})月?\s*", label or "")
    if m and 1 <= int(m.group(2)) <= 12:
        return f"{int(m.group(1))}年{int(m.group(2))}月"
    return f"{issued.year}年{issued.month}月"


def _target_value(t) -> str:
    if t.unit == "元":
        v = Decimal(str(t.value))
        text = f"{describe(v / 100_000_000)}亿元" if v >= 100_000_000 else f"{describe(v / 10_000)}万元"
    elif t.unit == "比例":
        text = _percent(float(t.value))
    else:
        text = f"{describe(t.value)}{t.unit}"
    word = t.word or ""
    if word in ("达到", ""):
        return text
    if word in ("超", "超过", "不少于"):
        return f"{word}{text}"
    return f"{text}{word}"


def _actual_value(t) -> str:
    if t.actual is None:
        return "暂无数据"
    if t.unit == "元":
        return f"{wan_yuan(round(Decimal(repr(t.actual)) * 100))}万元"
    if t.unit == "比例":
        return _percent(t.actual)
    return f"{describe(t.actual)}{t.unit}"


def _targets(result, plan: Plan) -> list[TargetLine]:
    names = {t.id: t.name for t in plan.targets}
    out = []
    for t in result.city:
        if t.met is True:
            state = "已完成"
        elif t.met is False:
            state = "进度滞后"
        elif t.actual is None:
            state = "暂无数据"
        else:
            state = "约数，不作判断"
        out.append(TargetLine(t.target_id, t.clause, t.text, names.get(t.target_id, t.text), _target_value(t),
                              _actual_value(t), state, t.met, t.note))
    return out


def _county_lines(result, plan: Plan) -> list[CountyLine]:
    from xl_ecom.workflows.refresh import progress_rate

    cols = list(plan.annex_columns)
    out = []
    for c in result.counties:
        cells = [(int(result.actuals[c].get(col["key"], 0)), result.targets[c][col["key"]]) for col in cols]
        total_target = sum(float(t or 0) for _, t in cells)
        rate = progress_rate(sum(a for a, _ in cells), total_target) if total_target else None
        award = int(result.by_county.loc[c].sum()) if len(result.by_county.columns) else 0
        out.append(CountyLine(c, cells, rate, [progress_rate(a, t) for a, t in cells], award))
    return out


def _clauses(result, plan: Plan) -> list[tuple[str, str, int]]:
    by_clause: dict[str, tuple[list[str], int]] = {}
    for rid, (_, cents) in result.by_rule.items():
        rule = plan.rules[rid]
        names, total = by_clause.get(rule.clause, ([], 0))
        names.append(rule.name)
        by_clause[rule.clause] = (names, total + int(cents))
    return [(clause, "、".join(names), cents) for clause, (names, cents) in by_clause.items()]


def _ledger_frames(ledger: Ledger, rnd: Round):
    """The input tables of a round as the ledger holds them (carry-forward included), for refresh.compute."""
    from xl_ecom.workflows.refresh import frames_from_source
    from xl_ecom.workflows.tables import TABLES

    def source(key: str) -> pd.DataFrame:
        frame = cycle.round_rows(ledger, key, rnd.id)
        table = next(t for t in TABLES if t.key == key)
        for col in table.columns:
            if col.key not in frame.columns:
                frame[col.key] = None
        return frame

    problems: list = []
    frames = frames_from_source(source, problems)
    if problems:  # cannot happen with the source above; kept as a plain error
        raise ReportError(f"台账中轮次“{rnd.label}”的数据无法读取：" + "；".join(str(p) for p in problems))
    return frames


def _compute_round(ledger: Ledger, rnd: Round, on, plan: Plan):
    from xl_ecom.workflows.refresh import RefreshError, compute

    try:
        from xl_ecom.workflows.departments import department_figures

        # the departments' 完成数 of that round fill the targets no county table counts (as 刷新 does)
        return compute(_ledger_frames(ledger, rnd), on=on, plan=plan,
                       departments=department_figures(ledger, plan, round_id=rnd.id))
    except RefreshError as exc:
        raise ReportError(f"台账中轮次“{rnd.label}”的数据无法计算：{exc.to_text()}") from None


def _workbook_result(workbook: Path, plan: Plan):
    from xl_ecom.workflows.refresh import Package, compute, read_package

    pkg = Package(workbook.read_bytes(), workbook.name)
    frames, on = read_package(pkg, plan)
    return compute(frames, on=on, plan=plan), on


@dataclass
class _Context:
    workbook: Path
    settings: dict[str, Any]
    contacts: list
    out_dir: Path
    db: str | None


def _context(workbook: Path, db: str | None) -> _Context:
    """设置, 通讯录, the output folder and the ledger URL (--db, else 设置's 台账数据库, else beside the workbook)."""
    import warnings

    from xl_ecom.workflows.mail import LEDGER_SETTING
    from xl_ecom.workflows.settings import PasswordInSettingsWarning, read_contacts, read_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PasswordInSettingsWarning)  # mail and status warn about it; not ours
        settings = read_settings(workbook)
    contacts = read_contacts(workbook)
    url = db or (str(settings.get(LEDGER_SETTING) or "").strip() or None)
    return _Context(workbook, settings, list(contacts), output_dir(settings, workbook), url)


def bulletin_data(workbook: Path | str, *, round_label: str | None = None, db: str | None = None,
                  issued: dt.date | None = None, plan: Plan | None = None) -> Bulletin:
    """Compute everything the bulletin shows for a round (default: the ledger's current round)."""
    plan = plan or load_plan()
    workbook = Path(workbook)
    if not workbook.is_file():
        raise ReportError(f"找不到工作簿“{workbook}”")
    result, on = _workbook_result(workbook, plan)  # first: says so when it is not the plan's city workbook
    ctx = _context(workbook, db)
    with open_ledger(ctx.workbook, ctx.db) as ledger:
        rnd = cycle.resolve_round(ledger, round_label)
        rounds = ledger.rounds()
        current = rounds[-1] if rounds else None
        issued = issued or dt.date.today()
        status = cycle.compute_status(ledger, ctx.settings, ctx.contacts, ctx.out_dir, plan=plan,
                                      round_label=rnd.label if rnd else None, today=issued)
        source = "市级工作簿的输入表"
        if rnd is not None and current is not None and rnd.id != current.id:
            result = _compute_round(ledger, rnd, on, plan)
            source = f"台账中“{rnd.label}”轮次的数据（未报送的单位沿用此前轮次的数据）"
        targets = _targets(result, plan)
        trend = []
        for r in rounds:
            if rnd is not None and r.id > rnd.id:
                break
            if rnd is not None and r.id == rnd.id:
                continue
            earlier = _compute_round(ledger, r, on, plan)
            trend.append(TrendPoint(r.label, earlier.total_cents, sum(1 for t in earlier.city if t.met), "台账"))
        label = rnd.label if rnd is not None else "本期"
        trend.append(TrendPoint(label, result.total_cents, sum(1 for t in targets if t.met), "本期"))
        problems = []
        for u in status.expected:
            if u.problem_count and u.submission_id is not None:
                rows = ledger.problems(u.submission_id)
                reasons = [f"{p.sheet}{('!' + p.cell) if p.cell else ''}：{p.reason}" for p in rows[:3]]
                problems.append(OpenProblem(u.unit, u.received_file, u.problem_count, reasons))
    bulletin = Bulletin(
        round_label=label,
        issued=issued,
        as_of=_round_month(rnd.label if rnd else "", issued),
        on=on,
        source=source,
        issuer=str(ctx.settings.get("发件人") or "").strip(),
        total_cents=result.total_cents,
        paid_rows=int(sum(n for n, _ in result.by_rule.values())),
        targets=targets,
        annex=[dict(col) for col in plan.annex_columns],
        counties=_county_lines(result, plan),
        clauses=_clauses(result, plan),
        trend=trend,
        status=status,
        overdue=[u for u in status.expected if u.overdue],
        problems=problems,
    )
    bulletin.summary = summary_text(bulletin)
    return bulletin


def _summary_template(path: Path = SUMMARY_TEMPLATE) -> _SummaryTemplate:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError:
        raise ReportError(f"找不到通报摘要模板“{path}”") from None
    text = "".join(line for line in raw.splitlines(keepends=True) if not line.lstrip().startswith("#")).strip()
    template = _SummaryTemplate(text)
    unknown = sorted(set(template.get_identifiers()) - set(SUMMARY_KEYS))
    if unknown or not template.is_valid():
        raise ReportError(f"通报摘要模板“{path.name}”有未知的占位符：{'、'.join(unknown) or '（格式错误）'}"
                          f"（可用：{'、'.join(SUMMARY_KEYS)}）")
    return template


def summary_text(b: Bulletin, template_path: Path = SUMMARY_TEMPLATE) -> str:
    behind = b.behind
    undecided = [t for t in b.targets if t.met is None]
    no_data = [t for t in undecided if t.actual == "暂无数据"]
    approx = [t for t in undecided if t.actual != "暂无数据"]
    other = []
    if no_data:
        other.append(f"{len(no_data)}项暂无填报数据")
    if approx:
        other.append(f"{len(approx)}项为约数，不作达标判断")
    exp = b.status.expected
    report_bits = [f"本轮应报送{len(exp)}个单位，已有有效报送{sum(u.valid for u in exp)}个"]
    if b.overdue:
        report_bits.append(f"逾期未报{len(b.overdue)}个")
    if b.problems:
        report_bits.append(f"{len(b.problems)}个单位最近一次报送有问题")
    values = {
        "截至": b.as_of,
        "目标数": str(len(b.targets)),
        "完成数": str(len(b.met)),
        "滞后数": str(len(behind)),
        "滞后说明": f"（{'、'.join(t.name for t in behind)}）" if behind else "",
        "其余说明": ("，" + "，".join(other)) if other else "",
        "奖补万元": wan_yuan(b.total_cents),
        "奖补元": yuan(b.total_cents),
        "笔数": str(b.paid_rows),
        "报送说明": "，".join(report_bits) + "。",
    }
    return _summary_template(template_path).substitute(values)


# ----------------------------------------------------------------------------------------------- fonts


def _installed_fonts() -> dict[str, str]:
    """Family name → font file, as matplotlib's font manager sees them (names from the files' name tables,
    both the English and, via fontconfig's list, the localised family names)."""
    from matplotlib import font_manager

    found = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    fc = shutil.which("fc-list")
    if fc:
        try:
            out = subprocess.run([fc, ":", "family", "file"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            path, _, families = line.partition(": ")
            for name in families.split(","):
                if name.strip():
                    found.setdefault(name.strip(), path.strip())
    return found


_FONT_CACHE: dict[str, str] | None = None


def find_font(candidates: Sequence[str]) -> tuple[str, str | None]:
    """The first installed family of ``candidates`` and its file; (the first candidate, None) when none is."""
    global _FONT_CACHE
    if _FONT_CACHE is None:
        _FONT_CACHE = _installed_fonts()
    for name in candidates:
        if name in _FONT_CACHE:
            return name, _FONT_CACHE[name]
    return candidates[0], None


# ----------------------------------------------------------------------------------------------- charts


def _figure(width_cm: float = 15.0, height_cm: float = 8.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_cm / 2.54, height_cm / 2.54), dpi=200)
    FigureCanvasAgg(fig)
    return fig


def _chart_font():
    from matplotlib.font_manager import FontProperties

    name, path = find_font(CHART_FONTS)
    if path is None:
        raise ReportError("找不到可以显示中文的字体，无法绘制通报的图表：请安装中文字体"
                          "（Debian/Ubuntu：apt-get install fonts-wqy-zenhei；Windows 自带黑体、仿宋）")
    return FontProperties(fname=path, size=9)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=200, bbox_inches="tight")
    return buf.getvalue()


def _style_axes(ax, font) -> None:
    for label in ax.get_xticklabels() + ax.get_yticklabels():
        label.set_fontproperties(font)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def chart_completion(b: Bulletin) -> bytes:
    """各县区完成率 (per annex column, grouped bars; the 100% line)."""
    import numpy as np

    font = _chart_font()
    fig = _figure(15.5, 8.5)
    ax = fig.add_subplot()
    n = len(b.annex)
    x = np.arange(len(b.counties))
    width = 0.8 / max(n, 1)
    for i, col in enumerate(b.annex):
        values = [100 * (c.rates[i] or 0) for c in b.counties]
        bars = ax.bar(x + (i - (n - 1) / 2) * width, values, width, label=col["short"])
        for rect, c in zip(bars, b.counties, strict=True):
            if c.rates[i] is None:
                ax.text(rect.get_x() + rect.get_width() / 2, 1, "无目标", ha="center", va="bottom",
                        fontproperties=font, fontsize=6, rotation=90)
    ax.axhline(100, color="#999999", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, [c.county for c in b.counties])
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("完成率（%）", fontproperties=font)
    ax.set_title("各县区完成率（完成数÷目标任务数）", fontproperties=font)
    ax.legend(prop=font, frameon=False, ncols=min(n, 3), loc="upper right")
    top = max([100.0] + [100 * (r or 0) for c in b.counties for r in c.rates])
    ax.set_ylim(0, top * 1.2)
    _style_axes(ax, font)
    return _png(fig)


def chart_clauses(b: Bulletin) -> bytes:
    """测算奖补资金按条款 (horizontal bars, 万元)."""
    font = _chart_font()
    fig = _figure(15.5, 2.0 + 0.8 * max(len(b.clauses), 1))
    ax = fig.add_subplot()
    labels = [c for c, _, _ in b.clauses] or ["（无）"]
    values = [float(Decimal(cents) / 1_000_000) for _, _, cents in b.clauses] or [0.0]
    bars = ax.barh(range(len(labels)), values, color="#c0504d")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    for rect, (_, _, cents) in zip(bars, b.clauses, strict=False):
        ax.text(rect.get_width(), rect.get_y() + rect.get_height() / 2, f" {wan_yuan(cents)}",
                va="center", fontproperties=font)
    ax.set_xlabel("万元", fontproperties=font)
    ax.set_title("测算奖补资金（按条款）", fontproperties=font)
    ax.set_xlim(0, max(values + [0.01]) * 1.25)
    _style_axes(ax, font)
    return _png(fig)


def chart_trend(b: Bulletin) -> bytes:
    """历轮测算奖补资金 (line with points; one round: one point, said in the title)."""
    font = _chart_font()
    fig = _figure(15.5, 7.0)
    ax = fig.add_subplot()
    labels = [p.label for p in b.trend]
    values = [float(Decimal(p.award_cents) / 1_000_000) for p in b.trend]
    ax.plot(range(len(values)), values, marker="o", color="#1f4e79")
    for i, p in enumerate(b.trend):
        ax.annotate(f"{wan_yuan(p.award_cents)}万元\n完成{p.met}项", (i, values[i]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontproperties=font, fontsize=7)
    ax.set_xticks(range(len(labels)), labels)
    if len(labels) == 1:
        ax.set_xlim(-1, 1)
    ax.set_ylim(0, max(values + [0.01]) * 1.35)
    ax.set_ylabel("万元", fontproperties=font)
    title = "历轮测算奖补资金和已完成目标数"
    if len(labels) == 1:
        title += "（目前只有一轮，仅一个点）"
    ax.set_title(title, fontproperties=font)
    _style_axes(ax, font)
    return _png(fig)


# ----------------------------------------------------------------------------------------------- .docx


@dataclass
class _Fonts:
    title: str
    body: str
    heading: str
    kai: str
    page: str


def _fonts() -> _Fonts:
    return _Fonts(find_font(TITLE_FONTS)[0], find_font(BODY_FONTS)[0], find_font(HEADING_FONTS)[0],
                  find_font(KAI_FONTS)[0], find_font(PAGE_NUMBER_FONTS)[0])


def _set_font(target, name: str, size: float | None = None, bold: bool | None = None) -> None:
    """Font of a run or a style, East Asian name included (w:eastAsia)."""
    from docx.oxml.ns import qn
    from docx.shared import Pt

    font = target.font
    font.name = name
    if size is not None:
        font.size = Pt(size)
    if bold is not None:
        font.bold = bold
    rpr = target.element.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.insert(0, fonts)
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), name)


def _paragraph(doc, text: str = "", font: str | None = None, size: float = BODY_PT, *, align=None,
               indent: bool = True, bold: bool = False, space_after: float = 0, line: float | None = LINE_PT):
    from docx.shared import Pt

    p = doc.add_paragraph()
    fmt = p.paragraph_format
    if indent:
        fmt.first_line_indent = Pt(size * 2)
    if align is not None:
        p.alignment = align
    fmt.space_before = Pt(0)
    fmt.space_after = Pt(space_after)
    if line is not None:
        from docx.enum.text import WD_LINE_SPACING

        fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
        fmt.line_spacing = Pt(line)
    if text:
        run = p.add_run(text)
        _set_font(run, font or doc.styles["Normal"].font.name, size, bold)
    return p


def _field_run(paragraph, instruction: str, shown: str, font: str, size: float) -> None:
    """A field (e.g. PAGE) as begin / instrText / separate / result / end runs."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def run_with(child):
        run = paragraph.add_run()
        _set_font(run, font, size)
        run._r.append(child)
        return run

    begin = OxmlElement("w:fldChar")
    begin.set(qn("w:fldCharType"), "begin")
    run_with(begin)
    instr = OxmlElement("w:instrText")
    instr.set(qn("xml:space"), "preserve")
    instr.text = f" {instruction} "
    run_with(instr)
    sep = OxmlElement("w:fldChar")
    sep.set(qn("w:fldCharType"), "separate")
    run_with(sep)
    result = paragraph.add_run(shown)
    _set_font(result, font, size)
    end = OxmlElement("w:fldChar")
    end.set(qn("w:fldCharType"), "end")
    run_with(end)


def _page_number(footer, font: str, odd: bool) -> None:
    """“— 1 —” (GB/T 9704: 4号半角宋体, a dash each side; odd pages right, even pages left, one character in)."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    p = footer.paragraphs[0] if footer.paragraphs else footer.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.RIGHT if odd else WD_ALIGN_PARAGRAPH.LEFT
    if odd:
        p.paragraph_format.right_indent = Pt(PAGE_NUMBER_PT)
    else:
        p.paragraph_format.left_indent = Pt(PAGE_NUMBER_PT)
    lead = p.add_run("—\u2002")  # an en space: a half-width gap each side (半角), kept by every renderer
    _set_font(lead, font, PAGE_NUMBER_PT)
    _field_run(p, "PAGE", "1", font, PAGE_NUMBER_PT)
    tail = p.add_run("\u2002—")
    _set_font(tail, font, PAGE_NUMBER_PT)


def _table(doc, headers: Sequence[str], rows: Sequence[Sequence[Any]], fonts: _Fonts, widths_cm=None,
           numeric: Sequence[int] = ()) -> None:
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Cm, Pt

    table = doc.add_table(rows=1, cols=len(headers))
    table.style = doc.styles["Table Grid"]
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    # the header row repeats on every page the table runs over
    trpr = table.rows[0]._tr.get_or_add_trPr()
    header_flag = OxmlElement("w:tblHeader")
    header_flag.set(qn("w:val"), "true")
    trpr.append(header_flag)

    def fill(cell, text, bold=False, right=False):
        cell.text = ""
        p = cell.paragraphs[0]
        p.alignment = WD_ALIGN_PARAGRAPH.RIGHT if right else WD_ALIGN_PARAGRAPH.CENTER
        p.paragraph_format.first_line_indent = Pt(0)
        p.paragraph_format.space_after = Pt(0)
        from docx.enum.text import WD_LINE_SPACING

        p.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
        run = p.add_run("" if text is None else str(text))
        _set_font(run, fonts.heading if bold else fonts.body, TABLE_PT, None)

    for cell, h in zip(table.rows[0].cells, headers, strict=True):
        fill(cell, h, bold=True)
    for row in rows:
        cells = table.add_row().cells
        for j, (cell, v) in enumerate(zip(cells, row, strict=True)):
            fill(cell, v, right=j in numeric)
    if widths_cm:  # fixed widths in the grid and in every cell (LibreOffice reads the grid, Word the cells)
        table.autofit = False
        for column, w in zip(table.columns, widths_cm, strict=True):
            column.width = Cm(w)
        for row in table.rows:
            for cell, w in zip(row.cells, widths_cm, strict=True):
                cell.width = Cm(w)


def _heading(doc, text: str, font: str, level: int = 1) -> None:
    _paragraph(doc, text, font, BODY_PT, indent=True, bold=False)


def _caption(doc, text: str, fonts: _Fonts) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    _paragraph(doc, text, fonts.heading, 12, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False, line=None, space_after=3)


def _picture(doc, png: bytes) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm

    p = _paragraph(doc, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False, line=None)
    p.paragraph_format.keep_with_next = True  # the caption below stays with its figure
    p.add_run().add_picture(io.BytesIO(png), width=Cm(15.0))


def write_docx(b: Bulletin, path: Path | str) -> Path:
    """The bulletin as a Word document (python-docx), laid out after GB/T 9704."""
    from docx import Document
    from docx.enum.section import WD_ORIENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm

    fonts = _fonts()
    doc = Document()
    section = doc.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Cm(PAGE_CM[0]), Cm(PAGE_CM[1])
    section.top_margin, section.bottom_margin = Cm(MARGINS_CM["top"]), Cm(MARGINS_CM["bottom"])
    section.left_margin, section.right_margin = Cm(MARGINS_CM["left"]), Cm(MARGINS_CM["right"])
    section.footer_distance = Cm(2.5)
    normal = doc.styles["Normal"]
    _set_font(normal, fonts.body, BODY_PT)
    doc.core_properties.title = f"{REPORT_TITLE}（{b.round_label}）"
    doc.core_properties.author = b.issuer or "xl-ecom"
    doc.core_properties.language = "zh-CN"

    doc.settings.odd_and_even_pages_header_footer = True
    _page_number(section.footer, fonts.page, odd=True)
    _page_number(section.even_page_footer, fonts.page, odd=False)

    _paragraph(doc, REPORT_TITLE, fonts.title, TITLE_PT, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False, line=36)
    _paragraph(doc, f"（{b.round_label}）", fonts.kai, BODY_PT, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False)
    _paragraph(doc, format_date(b.issued), fonts.body, BODY_PT, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False,
               space_after=BODY_PT)

    _heading(doc, "一、总体情况", fonts.heading)
    _paragraph(doc, b.summary, fonts.body)
    _paragraph(doc, f"奖补资金按政策日期{format_date(b.on)}的规则测算，为测算数，以审核拨付为准。数据来源：{b.source}。",
               fonts.body)

    _heading(doc, "二、各项目标完成情况", fonts.heading)
    _caption(doc, "表1　各项目标完成情况", fonts)
    _table(doc, ["序号", "目标（方案原文）", "条款", "目标", "完成", "状态"],
           [[i, t.text, t.clause, t.target, t.actual, t.state] for i, t in enumerate(b.targets, start=1)],
           fonts, widths_cm=(1.0, 5.6, 2.1, 2.5, 2.3, 2.1))
    _paragraph(doc, "", line=None)

    _heading(doc, "三、各县区完成情况", fonts.heading)
    headers = ["县区"] + [f"{col['short']}\n完成/目标" for col in b.annex] + ["综合完成率", "测算奖补（元）"]
    rows = []
    for c in b.counties:
        rows.append([c.county] + [f"{a}/{describe(t) if t is not None else '—'}" for a, t in c.cells]
                    + [_percent(c.rate), yuan(c.award_cents)])
    rows.append(["合计"] + [f"{sum(c.cells[i][0] for c in b.counties)}/"
                          f"{describe(sum(float(c.cells[i][1] or 0) for c in b.counties))}" for i in range(len(b.annex))]
                + ["", yuan(sum(c.award_cents for c in b.counties))])
    _caption(doc, "表2　各县区完成情况和测算奖补资金", fonts)
    annex_w = (15.6 - 2.0 - 2.2 - 3.4) / max(len(b.annex), 1)
    _table(doc, headers, rows, fonts, widths_cm=(2.0, *([annex_w] * len(b.annex)), 2.2, 3.4),
           numeric=(len(headers) - 1,))
    _paragraph(doc, "", line=None)
    _picture(doc, chart_completion(b))
    _caption(doc, "图1　各县区完成率", fonts)

    _heading(doc, "四、奖补资金测算情况", fonts.heading)
    _caption(doc, "表3　测算奖补资金（按条款）", fonts)
    _table(doc, ["条款", "奖补项目", "测算金额（元）"],
           [[c, names, yuan(cents)] for c, names, cents in b.clauses] + [["合计", "", yuan(b.total_cents)]],
           fonts, widths_cm=(2.2, 9.4, 4.0), numeric=(2,))
    _paragraph(doc, "", line=None)
    _picture(doc, chart_clauses(b))
    _caption(doc, "图2　测算奖补资金（按条款）", fonts)
    if len(b.trend) == 1:
        trend_note = "目前台账中只有本轮，趋势图只有一个点，下一轮报送后可比较。"
    else:
        first, last = b.trend[0], b.trend[-1]
        trend_note = (f"自“{first.label}”以来共{len(b.trend)}轮，测算奖补资金由{wan_yuan(first.award_cents)}万元"
                      f"变为{wan_yuan(last.award_cents)}万元，已完成目标由{first.met}项变为{last.met}项。")
    _paragraph(doc, trend_note, fonts.body)
    _picture(doc, chart_trend(b))
    _caption(doc, "图3　历轮测算奖补资金和已完成目标数", fonts)

    _heading(doc, "五、报送情况和存在问题", fonts.heading)
    due = (f"报送截止日期为{format_date(b.status.deadline)}" if b.status.deadline else "未设报送截止日期")
    _paragraph(doc, f"本轮（{b.round_label}）{due}。截至{format_date(b.issued)}，{b.status.summary()}。", fonts.body)
    if b.overdue:
        _caption(doc, "表4　逾期未报单位", fonts)
        _table(doc, ["序号", "单位", "类别", "状态"],
               [[i, u.unit, u.category, u.state] for i, u in enumerate(b.overdue, start=1)], fonts,
               widths_cm=(1.2, 5.4, 2.0, 7.0))
    else:
        _paragraph(doc, "没有逾期未报的单位。" if b.status.deadline else "本轮未设报送截止日期，不判断逾期。", fonts.body)
    _paragraph(doc, "", line=None)
    if b.problems:
        _caption(doc, f"表{5 if b.overdue else 4}　报送有问题、待改正的单位", fonts)
        _table(doc, ["单位", "报送文件", "问题数", "主要问题"],
               [[p.unit, p.file, p.count, "；".join(p.reasons) + ("……" if p.count > len(p.reasons) else "")]
                for p in b.problems], fonts, widths_cm=(2.4, 3.8, 1.4, 8.0))
    else:
        _paragraph(doc, "各单位最近一次报送均未发现问题。", fonts.body)

    if b.issuer:
        _paragraph(doc, "", line=None)
        _paragraph(doc, b.issuer, fonts.body, align=WD_ALIGN_PARAGRAPH.RIGHT, indent=False)
        _paragraph(doc, format_date(b.issued), fonts.body, align=WD_ALIGN_PARAGRAPH.RIGHT, indent=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    doc.save(buf)
    from xl_ecom.ooxml import safeio

    try:
        safeio.write_atomically(path, buf.getvalue(), backup=False)
    except safeio.FileBusyError as exc:
        raise ReportError(str(exc)) from None
    return path


# ----------------------------------------------------------------------------------------------- PDF

_WINDOWS_SOFFICE = (r"C:\Program Files\LibreOffice\program\soffice.exe",
                    r"C:\Program Files (x86)\LibreOffice\program\soffice.exe")


def find_soffice() -> str | None:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found:
        return found
    return next((p for p in _WINDOWS_SOFFICE if Path(p).is_file()), None)


def docx_to_pdf(docx: Path | str, timeout: float = 300) -> Path:
    """LibreOffice headless: the .docx beside itself as .pdf, with a throw-away profile of its own."""
    docx = Path(docx)
    soffice = find_soffice()
    if soffice is None:
        raise ReportError("找不到 LibreOffice（soffice），无法生成 PDF：请安装 LibreOffice，"
                          "或用 Word 打开 .docx 另存为 PDF")
    profile = Path(tempfile.mkdtemp(prefix="xl-ecom-report-lo-"))
    work = Path(tempfile.mkdtemp(prefix="xl-ecom-report-pdf-"))
    try:
        cmd = [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
               "--convert-to", "pdf:writer_pdf_Export", "--outdir", str(work), str(docx.resolve())]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ReportError(f"LibreOffice 在 {timeout:.0f} 秒内没有完成 PDF 转换（{docx.name}）") from None
        made = work / (docx.stem + ".pdf")
        if not made.is_file():
            detail = (done.stderr or done.stdout or "").strip().splitlines()
            if any("could not be loaded" in line for line in detail):
                raise ReportError(f"LibreOffice 打不开“{docx.name}”：很可能只装了 Calc，没有 Writer 组件"
                                  "（Debian/Ubuntu：apt-get install libreoffice-writer-nogui）")
            raise ReportError(f"LibreOffice 没有生成 PDF（{docx.name}，退出码 {done.returncode}"
                              + (f"：{detail[-1]}" if detail else "") + "）")
        target = docx.with_suffix(".pdf")
        from xl_ecom.ooxml import safeio

        try:
            safeio.write_atomically(target, made.read_bytes(), backup=False)
        except safeio.FileBusyError as exc:
            raise ReportError(str(exc)) from None
        return target
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- entry


@dataclass
class ReportResult:
    bulletin: Bulletin
    docx: Path
    pdf: Path | None
    pdf_error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pdf is not None

    def to_text(self) -> str:
        lines = [f"已生成进展通报（{self.bulletin.round_label}，发文日期 {self.bulletin.issued.isoformat()}）：",
                 f"  Word：{self.docx}"]
        if self.pdf is not None:
            lines.append(f"  PDF：{self.pdf}")
        else:
            lines.append(f"  PDF 未生成：{self.pdf_error}")
        lines.append(self.bulletin.summary)
        return "\n".join(lines)


def _safe_name(text: str) -> str:
    return re.sub(r'[\\/:*?"<>|\s]+', "_", text).strip("_") or "本期"


def write_report(workbook: Path | str, *, round_label: str | None = None, out: Path | str | None = None,
                 db: str | None = None, issued: dt.date | None = None, pdf: bool = True,
                 plan: Plan | None = None) -> ReportResult:
    """The ribbon's and the CLI's entry point: write 进展通报_<轮次>.docx and .pdf; returns where."""
    workbook = Path(workbook)
    if not workbook.is_file():
        raise ReportError(f"找不到工作簿“{workbook}”")
    bulletin = bulletin_data(workbook, round_label=round_label, db=db, issued=issued, plan=plan)
    if out is None:
        folder = _context(workbook, db).out_dir / SUBDIR
    else:
        folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"输出位置“{folder}”不是文件夹")
    docx = write_docx(bulletin, folder / f"进展通报_{_safe_name(bulletin.round_label)}.docx")
    result = ReportResult(bulletin, docx, None)
    if pdf:
        try:
            result.pdf = docx_to_pdf(docx)
        except ReportError as exc:
            result.pdf_error = str(exc)
    else:
        result.pdf_error = "按要求不生成 PDF"
    return result


def _parse_date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value).strip().replace("/", "-"))
    except ValueError:
        raise ReportError(f"发文日期“{value}”不是有效日期，请写成 2020-10-28 这样的格式") from None


def cmd_report(args, out=None, err=None) -> int:
    out = out or sys.stdout
    result = write_report(args.workbook, round_label=args.round, out=args.out, db=args.db,
                          issued=_parse_date(args.date), pdf=not args.no_pdf)
    print(result.to_text(), file=out)
    return 0 if (result.ok or args.no_pdf) else 1


def add_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="进展通报：按本轮数据生成 Word 和 PDF 版的进展通报（目标完成、各县区、奖补、报送情况）",
        description="生成报送轮次的进展通报（.docx，另用 LibreOffice 转成 .pdf）：标题和发文日期、由数字生成的摘要、"
                    "各项目标和各县区的表格、各县区完成率、按条款的奖补和历轮趋势图、逾期未报和报送有问题的单位。"
                    f"版式参照 GB/T 9704（A4、仿宋三号、页码“— 1 —”）。默认写到输出文件夹的“{SUBDIR}”下。"
                    "PDF 未能生成时保留 .docx，退出码为 1。",
    )
    p.add_argument("workbook", metavar="WORKBOOK", help=f"市级工作簿，如 {layout.WORKBOOK_NAME}")
    p.add_argument("--round", metavar="轮次", help="哪一轮（默认台账的当前轮次）")
    p.add_argument("--out", metavar="DIR", help=f"输出文件夹（默认“{SETTINGS_SHEET}”表输出文件夹下的“{SUBDIR}”）")
    p.add_argument("--db", metavar="URL", help="台账数据库（默认为设置表“台账数据库”，再默认为工作簿旁的 .台账.sqlite）")
    p.add_argument("--date", metavar="日期", help="发文日期，如 2020-10-28（默认今天）")
    p.add_argument("--no-pdf", action="store_true", help="只生成 .docx，不转 PDF")
    p.set_defaults(func=cmd_report)
    return p
