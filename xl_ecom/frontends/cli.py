"""The `xl-ecom` command line: every ribbon button has a twin here that runs on a file."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from xl_ecom import __version__
from xl_ecom.common.errors import XlEcomError

# front-end modules that register their own subcommands with add_cli(subparsers)
FRONT_ENDS = (
    "xl_ecom.workflows.build",
    "xl_ecom.workflows.departments",
    "xl_ecom.workflows.counties",
    "xl_ecom.workflows.collect",
    "xl_ecom.workflows.validate",
    "xl_ecom.workflows.refresh",
    "xl_ecom.workflows.mail",
)


# Exit codes, the same for every subcommand (documented in the README):
DONE = 0  # 完成
DONE_WITH_PROBLEMS = 1  # 完成，但有问题（如 check --strict 有警告、校验发现错误）
ERROR = 2  # 出错，未完成（错误信息以“错误：”开头，写到标准错误）

# argparse's own (gettext) strings, in Chinese
_ARGPARSE_ZH = {
    "usage: ": "用法：",
    "positional arguments": "位置参数",
    "options": "选项",
    "optional arguments": "选项",
    "show this help message and exit": "显示本帮助并退出",
    "show program's version number and exit": "显示版本号并退出",
    "%(prog)s: error: %(message)s\n": "%(prog)s：错误：%(message)s\n",
    "the following arguments are required: %s": "缺少必填参数：%s",
    "invalid choice: %(value)r (choose from %(choices)s)": "无效的选项值 %(value)r（可选：%(choices)s）",
    "unrecognized arguments: %s": "无法识别的参数：%s",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "expected one argument": "需要一个值",
    "expected at least one argument": "至少需要一个值",
    "expected at most one argument": "至多一个值",
    "ambiguous option: %(option)s could match %(matches)s": "选项 %(option)s 有歧义，可能是 %(matches)s",
    "invalid %(type)s value: %(value)r": "无效的 %(type)s 值：%(value)r",
    "not allowed with argument %s": "不能与参数 %s 同时使用",
    "ignored explicit argument %r": "忽略了多余的值 %r",
    "one of the arguments %s is required": "参数 %s 必须给出其中之一",
    "unknown parser %(parser_name)r (choices: %(choices)s)": "未知命令 %(parser_name)r（可选：%(choices)s）",
    "can't open '%(filename)s': %(error)s": "无法打开“%(filename)s”：%(error)s",
    "unexpected option string: %s": "意外的选项：%s",
}
_ARGPARSE_ZH_PLURAL = {
    "expected %s argument": "需要 %s 个值",
    "conflicting option string: %s": "选项冲突：%s",
}


def _zh(message: str) -> str:
    return _ARGPARSE_ZH.get(message, message)


def _zh_plural(singular: str, plural: str, n: int) -> str:
    return _ARGPARSE_ZH_PLURAL.get(singular, singular if n == 1 else plural)


@contextlib.contextmanager
def _chinese_argparse():
    """Swap argparse's gettext lookups for Chinese ones, only while our parser works."""
    saved = argparse._, argparse.ngettext
    argparse._, argparse.ngettext = _zh, _zh_plural
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved


class ChineseArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage, help and error messages are Chinese; errors exit with 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("add_help", False)
        add_help = kwargs.pop("add_help")
        with _chinese_argparse():
            super().__init__(*args, add_help=False, **kwargs)
            if not add_help:
                self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS, help="显示本帮助并退出")

    def parse_args(self, *args, **kwargs):
        with _chinese_argparse():
            return super().parse_args(*args, **kwargs)

    def parse_known_args(self, *args, **kwargs):
        with _chinese_argparse():
            return super().parse_known_args(*args, **kwargs)

    def format_usage(self):
        with _chinese_argparse():
            return super().format_usage()

    def format_help(self):
        with _chinese_argparse():
            return super().format_help()

    def add_argument_group(self, *args, **kwargs):
        with _chinese_argparse():
            return super().add_argument_group(*args, **kwargs)

    def add_subparsers(self, **kwargs):
        with _chinese_argparse():
            return super().add_subparsers(**kwargs)

    def error(self, message):
        with _chinese_argparse():
            self.print_usage(sys.stderr)
            self.exit(ERROR, f"错误：{message}\n")


def _out(text: str = "") -> None:
    print(text)


def cmd_calc(args) -> int:
    from xl_ecom.rules import engine

    rule = engine.get_rule(args.rule)
    values = [None if v == "" else v for v in args.values]
    if args.explain:
        _out(engine.explain(rule.id, *values, on=args.date).to_text())
        return 0
    result = engine.calculate(rule.id, *values, on=args.date)
    if result is None:
        _out(f"{rule.id}：必填输入为空，结果为空")
    else:
        _out(f"{rule.id}（{rule.name}，条款{rule.clause}）= {result:,.2f} 元")
    return 0


def cmd_clauses(args) -> int:
    from xl_ecom.policy import lookup
    from xl_ecom.policy import load_plan

    plan = load_plan()
    if args.clause:
        _out(lookup.clause_text(args.clause))
        _out(lookup.clause_departments(args.clause))
        return 0
    for task in plan.tasks:
        _out(f"{task['id']} {task['title']}")
        for m in (x for x in plan.measures if x.task_id == task["id"]):
            coop = f"；配合：{'、'.join(m.cooperating)}" if m.cooperating else ""
            deadline = f"；时限：{m.deadline.isoformat()}" if m.deadline else ""
            _out(f"  {m.id}  牵头：{m.lead}{coop}{deadline}")
            for t in plan.targets_for_measure(m.id):
                _out(f"      目标：{t.text}")
            for r in plan.rules_for_measure(m.id):
                _out(f"      奖补：{r.id} {r.name}")
    return 0


def cmd_check(args) -> int:
    from xl_ecom.policy.check import WARNING, check_plan, default_source_path

    source = None
    path = Path(args.source) if args.source else default_source_path()
    if path is not None:
        if not path.exists():
            raise XlEcomError(f"找不到方案原文文件“{path}”")
        source = path.read_text(encoding="utf-8")
    findings = check_plan(source_text=source)
    for f in findings:
        _out(str(f))
    warnings = sum(1 for f in findings if f.severity == WARNING)
    _out(f"共{len(findings)}条：警告{warnings}条，提示{len(findings) - warnings}条。")
    return 1 if (args.strict and warnings) else 0


def cmd_run(args) -> int:
    """The main job on the built-in plan: check it, build the workbook, write department and county files."""
    from xl_ecom.workflows import build, counties, departments, settings
    from xl_ecom.policy.check import WARNING, check_plan

    out = Path(args.out)
    findings = check_plan()
    warnings = [f for f in findings if f.severity == WARNING]
    _out(f"方案检查：{len(findings)}条，其中警告{len(warnings)}条（xl-ecom check 查看全部）")
    for f in warnings:
        _out(f"  {f}")
    wb = build.build_workbook(out / "目标任务分解表.xlsm")
    _out(f"工作簿：{wb}")
    # the files go where the workbook's 设置 says, so its buttons and `xl-ecom mail` find them
    values = settings.read_settings(wb)
    folder = settings.output_dir(values, wb)
    on = values.get("政策日期")
    deps = departments.make_department_sheets(folder, on=on)
    _out(f"部门任务表：{len(deps)}个，在 {folder / departments.SUBDIR}")
    cts = counties.make_county_workbooks(folder, on=on)
    _out(f"县区工作簿：{len(cts)}个，在 {folder / counties.SUBDIR}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ChineseArgumentParser(
        prog="xl-ecom",
        description="淮南市农村电商提质增效工作方案：奖补测算、目标任务分解、部门任务表、县区工作簿与邮件发送。",
    )
    parser.add_argument("--version", action="version", version=f"xl-ecom {__version__}", help="显示版本号并退出")
    sub = parser.add_subparsers(dest="command", metavar="命令")

    p = sub.add_parser("calc", help="按条款计算一项奖补，如 xl-ecom calc AWARD_LIVESTREAM 800000")
    p.add_argument("rule", help="规则名（与 Excel 函数同名），如 AWARD_LIVESTREAM")
    p.add_argument("values", nargs="*", help="参数，顺序同 Excel 函数；金额可写 50万、1.2亿元")
    p.add_argument("--explain", action="store_true", help="逐步说明计算过程")
    p.add_argument("--date", help="政策日期（默认今天），如 2020-12-31")
    p.set_defaults(func=cmd_calc)

    p = sub.add_parser("clauses", help="列出方案的任务、牵头配合单位、目标和奖补规则")
    p.add_argument("clause", nargs="?", help="只看某一条，如 二（三）")
    p.set_defaults(func=cmd_clauses)

    p = sub.add_parser("check", help="检查方案本身：附件合计与正文目标、编号、单位")
    p.add_argument("--source", help="方案原文 .txt（默认自动查找 shared/policy）")
    p.add_argument("--strict", action="store_true", help="有警告时返回非零")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="一次完成：检查方案、生成工作簿、部门任务表和县区工作簿")
    p.add_argument("--out", default=".", help="工作簿所在文件夹（默认当前文件夹）；生成的文件放在工作簿“设置”表的输出文件夹（默认其下的“输出”）")
    p.set_defaults(func=cmd_run)

    for name in FRONT_ENDS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_cli(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except XlEcomError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("已中断。", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"错误：文件操作失败：{exc.strerror or exc}（{exc.filename or ''}）", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
