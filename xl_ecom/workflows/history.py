"""History and export of the ledger (issue #9).

- ``xl-ecom history 县区 [--workbook W] [--db URL]``: a unit's submissions, oldest first (version,
  received time, file, status, rows, problems, the ledger's reason) and between each two consecutive
  submissions that carried rows what changed (:meth:`xl_ecom.ledger.Ledger.diff`, ``Diff.summary``).
- ``xl-ecom export --csv | --parquet --out DIR [--round R] [--workbook W] [--db URL]``: the current rows
  of every table, 报送记录 and 发送记录 as files for analysts (:meth:`xl_ecom.ledger.Ledger.export`).

The ledger is the one ``--db`` names, else the one 设置's 台账数据库 names, else the SQLite file beside
the workbook (default: ``workbook/目标任务分解表.xlsm``).  A ledger that does not exist yet is not
created by these read-only commands.  Exit codes: 0 done, 1 done with something to note (no
submission of that unit), 2 error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xl_ecom.common.errors import XlEcomError
from xl_ecom.ledger import FAULTY, REJECTED, Ledger, default_path, open_ledger
from xl_ecom.workflows import layout

DEFAULT_WORKBOOK = Path("workbook") / layout.WORKBOOK_NAME


class HistoryError(XlEcomError):
    """The ledger cannot be found or read, or a round does not exist."""


def _settings_url(workbook: Path) -> str | None:
    from xl_ecom.workflows.refresh.read import LEDGER_SETTING

    if not workbook.is_file():
        return None
    try:
        import warnings

        from xl_ecom.workflows.settings import read_settings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = read_settings(workbook).get(LEDGER_SETTING)
    except Exception:  # 设置 unreadable: the default ledger beside the workbook
        return None
    return str(value).strip() if value is not None and str(value).strip() else None


def open_existing(workbook: Path | str | None, db: str | None) -> Ledger:
    """The ledger for ``workbook`` (or at ``db``); refuses, without creating it, when there is none."""
    path = Path(workbook) if workbook else DEFAULT_WORKBOOK
    url = db or _settings_url(path)
    if url is None:
        beside = default_path(path.resolve())
        if not beside.is_file():
            raise HistoryError(f"找不到台账“{beside}”：请用 --workbook 指定市级工作簿，或用 --db 指定台账数据库")
    return open_ledger(path, url)


def history_text(ledger: Ledger, unit: str) -> tuple[str, bool]:
    """The unit's submissions and the changes between them, and whether there was any."""
    subs = ledger.history(unit)
    if not subs:
        units = sorted({s.unit for s in ledger.submissions()})
        known = f"台账中有报送的单位：{'、'.join(units)}" if units else "台账中还没有任何报送"
        return f"台账中没有“{unit}”的报送。{known}", False
    labels = {r.id: r.label for r in ledger.rounds()}
    lines = [f"{unit}的报送记录（{len(subs)}份，台账：{ledger.url}）："]
    previous = None
    for s in subs:
        when = s.received_at.strftime("%Y-%m-%d %H:%M:%S") if s.received_at else ""
        line = (f"  第{s.version}版（第{s.id}号，{labels.get(s.round_id, '')}）{when} “{s.file_name}” "
                f"{s.status}，{s.row_count}行，{s.problem_count}个问题")
        if s.claimed_unit and s.verified_unit and s.claimed_unit != s.verified_unit:
            line += f"，声明为“{s.claimed_unit}”"
        if s.reason:
            line += f"（{s.reason}）"
        lines.append(line)
        if s.status in (REJECTED, FAULTY):  # no rows to compare: the previous version stays the base
            continue
        if previous is not None and previous.round_id == s.round_id:
            lines.append(f"    与第{previous.version}版相比：{ledger.diff(previous.id, s.id).summary()}")
        previous = s
    current = ledger.current_submission(unit)
    if current is not None:
        lines.append(f"当前数据：第{current.version}版（“{current.file_name}”）")
    else:
        lines.append("当前轮次尚无可用的数据")
    return "\n".join(lines), True


def cmd_history(args, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    unit = str(args.unit).strip()
    if not unit:
        print("错误：请给出单位名称，如 寿县", file=err)
        return 2
    try:
        with open_existing(args.workbook, args.db) as ledger:
            text, found = history_text(ledger, unit)
    except XlEcomError as exc:
        print(f"错误：{exc}", file=err)
        return 2
    print(text, file=out)
    return 0 if found else 1


def cmd_export(args, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    fmt = "parquet" if args.parquet else "csv"
    try:
        with open_existing(args.workbook, args.db) as ledger:
            round_id = None
            if args.round:
                rnd = ledger.round_by_label(args.round)
                if rnd is None:
                    labels = "、".join(r.label for r in ledger.rounds()) or "（无）"
                    raise HistoryError(f"台账中没有轮次“{args.round}”（现有轮次：{labels}）")
                round_id = rnd.id
            files = ledger.export(args.out, fmt, round_id)
    except XlEcomError as exc:
        print(f"错误：{exc}", file=err)
        return 2
    print(f"已导出{len(files)}个{fmt}文件到 {Path(args.out)}：", file=out)
    for f in files:
        print(f"  {f.name}", file=out)
    return 0


def add_cli(subparsers) -> None:
    db_help = ("台账数据库（如 postgresql://用户:密码@主机/库名）；默认为设置表“台账数据库”，"
               "再默认为工作簿旁的“<工作簿名>.台账.sqlite”")
    p = subparsers.add_parser("history", help="报送历史：列出一个单位在台账中的各版报送及前后两版的变化",
                              description="列出一个单位（县区或市本级）在台账中的每一版报送（版本、收到时间、文件、状态、行数、"
                                          "问题数），以及相邻两版之间新增、删除、修改的行数。")
    p.add_argument("unit", metavar="县区", help="单位名称，如 寿县、市本级")
    p.add_argument("--workbook", help=f"市级工作簿（默认 {DEFAULT_WORKBOOK}）")
    p.add_argument("--db", metavar="URL", help=db_help)
    p.set_defaults(func=cmd_history)

    e = subparsers.add_parser("export", help="导出台账：各表的当前数据、报送记录和发送记录（CSV 或 Parquet），供分析使用",
                              description="把台账中各表的当前数据、报送记录和发送记录导出为 CSV（UTF-8 带 BOM，Excel/WPS 可直接打开）"
                                          "或 Parquet 文件。")
    fmt = e.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--csv", action="store_true", help="导出为 CSV")
    fmt.add_argument("--parquet", action="store_true", help="导出为 Parquet")
    e.add_argument("--out", required=True, metavar="DIR", help="导出到的文件夹")
    e.add_argument("--round", metavar="轮次", help="只导出该轮次的当前数据（默认当前轮次）")
    e.add_argument("--workbook", help=f"市级工作簿（默认 {DEFAULT_WORKBOOK}）")
    e.add_argument("--db", metavar="URL", help=db_help)
    e.set_defaults(func=cmd_export)
