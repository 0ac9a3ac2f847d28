"""The `xl-ecom` command line: every ribbon button has a twin here that runs on a file."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import logging
import shutil
import sys
import traceback
import unicodedata
from pathlib import Path

from xl_ecom import __version__
from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.progress import Progress, status_text

# front-end modules that register their own subcommands with add_cli(subparsers)
FRONT_ENDS = (
    "xl_ecom.workflows.build",
    "xl_ecom.workflows.departments",
    "xl_ecom.workflows.counties",
    "xl_ecom.workflows.collect",
    "xl_ecom.workflows.validate",
    "xl_ecom.workflows.refresh",
    "xl_ecom.workflows.mail",
    "xl_ecom.workflows.cycle",  # round, status, remind, return
    "xl_ecom.workflows.report",  # 进展通报
    "xl_ecom.workflows.history",  # history, export
)  # setup-excel and bundle (xl_ecom.frontends) are added last


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


# --- output, progress, logging ----------------------------------------------------------------------

log = logging.getLogger("xl_ecom.cli")

#: the city workbook's file name, looked for when a command's --workbook is not given
WORKBOOK_NAME = "目标任务分解表.xlsm"

#: Chinese names for logging's levels (-v 信息, -vv 调试)
_LEVEL_NAMES = {logging.DEBUG: "调试", logging.INFO: "信息", logging.WARNING: "警告", logging.ERROR: "错误", logging.CRITICAL: "严重"}


def _out(text: str = "") -> None:
    print(text)


def _json_out(data) -> None:
    """UTF-8 JSON on stdout: Chinese kept as it is (ensure_ascii=False), keys sorted (stable)."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, indent=2)
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write((text + "\n").encode("utf-8"))
        buffer.flush()
    else:  # a StringIO in tests
        stream.write(text + "\n")


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _clip(text: str, width: int) -> str:
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


class TerminalProgress:
    """The :class:`xl_ecom.common.progress.Progress` protocol on a terminal: one line on stderr,
    redrawn in place (``[#####-----] 3/8 寿县``); prints nothing when stderr is not a terminal."""

    BAR = 20

    def __init__(self, stream=None, *, enabled: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else enabled
        self._shown = False

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        log.info(status_text(message, done, total))
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        if done is not None and total:
            filled = round(self.BAR * min(done, total) / total)
            line = f"[{'#' * filled}{'-' * (self.BAR - filled)}] {done}/{total} {message}"
        else:
            line = message
        line = _clip(line, width)
        self.stream.write("\r" + line + " " * (width - _display_width(line)))
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the progress line (the next output starts on a fresh line)."""
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


def _progress(args) -> TerminalProgress:
    progress = getattr(args, "_progress", None)
    if progress is None:
        progress = args._progress = TerminalProgress()
    return progress


def _setup_logging(verbosity: int) -> None:
    for level, name in _LEVEL_NAMES.items():
        logging.addLevelName(level, name)
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s：%(message)s", force=True)


def default_workbook() -> Path | None:
    """The city workbook used when --workbook is not given: workbook/目标任务分解表.xlsm (or the file
    itself) in the current folder, else beside the package's source checkout; None when there is none."""
    here = Path.cwd()
    root = Path(__file__).resolve().parents[2]
    for candidate in (here / "workbook" / WORKBOOK_NAME, here / WORKBOOK_NAME, root / "workbook" / WORKBOOK_NAME):
        if candidate.is_file():
            return candidate
    return None


def _existing_file(path, what: str = "工作簿") -> Path:
    path = Path(path)
    if not path.is_file():
        raise XlEcomError(f"找不到{what}“{path}”")
    return path


# --- commands defined here -------------------------------------------------------------------------

def policy_date(args) -> tuple[object, str]:
    """(policy date, where it came from) for calc: --date; else the 设置 sheet's 政策日期 of
    --workbook (or the default workbook when present); else the plan's default date."""
    from xl_ecom.workflows.settings import SETTINGS_DEFAULTS, read_settings

    if args.date:
        return args.date, "--date"
    workbook = Path(args.workbook) if args.workbook else default_workbook()
    if workbook is not None:
        _existing_file(workbook)
        on = read_settings(workbook).get("政策日期")
        if on:
            return on, f"工作簿“{workbook}”的设置表"
    return SETTINGS_DEFAULTS["政策日期"], "方案默认"


def _threshold_text(rule, explanation) -> str | None:
    """When the result is 0 because a threshold is not met: “须≥500,000.00元（原文“达到50万元”）”."""
    from xl_ecom.rules.explain import unmet_threshold

    if explanation.result_cents != 0:
        return None
    return unmet_threshold(rule, explanation.steps)


def cmd_calc(args) -> int:
    from xl_ecom.rules import engine

    rule = engine.get_rule(args.rule)
    values = [None if v == "" else v for v in args.values]
    on, source = policy_date(args)
    explanation = engine.explain(rule.id, *values, on=on)
    threshold = _threshold_text(rule, explanation)
    result = explanation.result
    if args.json:
        _json_out({
            "rule": rule.id,
            "name": rule.name,
            "clause": rule.clause,
            "date": explanation.on.isoformat(),
            "date_source": source,
            "inputs": [None if v is None else str(v) for v in values],
            "result": None if result is None else f"{result:.2f}",
            "unit": "元",
            "threshold_not_met": threshold is not None,
            "threshold": threshold,
            "explanation": explanation.to_text().splitlines() if args.explain else None,
        })
        return DONE
    if args.explain:
        _out(explanation.to_text())
    elif result is None:
        _out(f"{rule.id}：必填输入为空，结果为空（政策日期 {explanation.on.isoformat()}，{source}）")
    else:
        _out(f"{rule.id}（{rule.name}，条款{rule.clause}）= {result:,.2f} 元（政策日期 {explanation.on.isoformat()}，{source}）")
    if threshold:
        _out(f"未达到门槛：{threshold}")
    return DONE


def cmd_clauses(args) -> int:
    from xl_ecom.policy import load_plan, lookup

    plan = load_plan()
    if args.clause:
        _out(lookup.clause_text(args.clause))
        _out(lookup.clause_departments(args.clause))
        return DONE
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
    return DONE


def cmd_check(args) -> int:
    from xl_ecom.policy.check import WARNING, check_plan, default_source_path

    source = None
    path = Path(args.source) if args.source else default_source_path()
    if path is not None:
        _existing_file(path, "方案原文文件")
        source = path.read_text(encoding="utf-8")
    findings = check_plan(source_text=source)
    warnings = sum(1 for f in findings if f.severity == WARNING)
    code = DONE_WITH_PROBLEMS if (args.strict and warnings) else DONE
    if args.json:
        _json_out({
            "source": str(path) if path else None,
            "findings": [{"severity": f.severity, "subject": f.subject, "message": f.message} for f in findings],
            "warnings": warnings,
            "notices": len(findings) - warnings,
            "exit_code": code,
        })
        return code
    for f in findings:
        _out(str(f))
    _out(f"共{len(findings)}条：警告{warnings}条，提示{len(findings) - warnings}条。")
    return code


def cmd_run(args) -> int:
    """The main job on the built-in plan: check it, build the workbook, write department and county files."""
    from xl_ecom.policy.check import WARNING, check_plan
    from xl_ecom.workflows import counties, departments, settings

    out = Path(args.out)
    findings = check_plan()
    warnings = [f for f in findings if f.severity == WARNING]
    _out(f"方案检查：{len(findings)}条，其中警告{len(warnings)}条（xl-ecom check 查看全部）")
    for f in warnings:
        _out(f"  {f}")
    from xl_ecom.frontends.addin import XLWINGS_ADDIN
    from xl_ecom.workflows import upgrade

    # keeps the data of one already there
    built = upgrade.write_city_workbook(out / WORKBOOK_NAME, addin=XLWINGS_ADDIN, command="xl-ecom run")
    wb = built.path
    _out(f"工作簿：{built.to_text()}")
    # the files go where the workbook's 设置 says, so its buttons and `xl-ecom mail` find them
    values = settings.read_settings(wb)
    folder = settings.output_dir(values, wb)
    on = values.get("政策日期")
    progress = _progress(args)
    deps = departments.make_department_sheets(folder, on=on, progress=progress, workbook=wb)
    progress.close()
    _out(f"部门任务表：{len(deps)}个，在 {folder / departments.SUBDIR}")
    # issued against the workbook just built: tokens in the ledger beside it, as `counties --workbook`
    cts = counties.make_county_workbooks(folder, on=on, progress=progress, workbook=wb)
    progress.close()
    _out(f"县区工作簿：{len(cts)}个，在 {folder / counties.SUBDIR}")
    return DONE


# --- the workflow commands, run under this module's exit-code convention ---------------------------
# The workflow modules register their subcommands (add_cli) with their own handlers.  main() runs each
# under the one convention: inputs named on the command line are checked first (a missing file is
# 错误： on stderr, exit 2), and a handler that reports an error on stdout or without the 错误：
# prefix has its message moved to stderr with the prefix.  departments, counties and refresh get the
# terminal progress bar: their workflow functions take a progress argument.

def cmd_build(args) -> int:
    from xl_ecom.frontends.addin import XLWINGS_ADDIN
    from xl_ecom.workflows import build, upgrade

    report = upgrade.write_city_workbook(args.out or build.DEFAULT_OUT, addin=XLWINGS_ADDIN, command="xl-ecom build")
    _out(report.to_text())  # an existing workbook is rebuilt with its data kept, after a backup
    return DONE


def _with_progress(make, progress):
    def made(folder, **kwargs):
        return make(folder, progress=progress, **kwargs)

    return made


def cmd_departments(args) -> int:
    from xl_ecom.workflows import departments

    make = _with_progress(departments.make_for_cli(args), _progress(args))
    return departments.run_export_cli(args, make, "部门任务表", departments.SUBDIR)


def cmd_counties(args) -> int:
    from xl_ecom.workflows import counties, departments

    make = counties.make_for_cli(args) if hasattr(counties, "make_for_cli") else counties.make_county_workbooks
    return departments.run_export_cli(args, _with_progress(make, _progress(args)), "县区工作簿", counties.SUBDIR)


def cmd_refresh(args) -> int:
    from xl_ecom.workflows import refresh

    progress = _progress(args)

    def lines(message, done=None, total=None):
        print(status_text(message, done, total), file=sys.stderr)

    # refresh -v: progress lines even without a terminal
    use: Progress = lines if (args.verbose and not progress.enabled) else progress
    try:
        report = refresh.refresh_workbook(_existing_file(args.workbook), on=args.date, backup=not args.no_backup, progress=use,
                                           db=getattr(args, "db", None))
    finally:
        progress.close()
    _out(report.to_text())
    return DONE


#: subcommand -> the handler used instead of the workflow module's own (progress; build with the xlwings add-in)
HANDLERS = {
    "build": cmd_build,
    "departments": cmd_departments,
    "counties": cmd_counties,
    "refresh": cmd_refresh,
}

#: subcommand -> [(argument, what it names, "file" | "folder")]: checked before the handler runs;
#: any other subcommand's ``workbook`` argument, when given, must name a file
INPUTS = {
    "collect": [("folder", "文件夹", "folder"), ("into", "市级工作簿", "file")],
}
_WORKBOOK_INPUT = [("workbook", "工作簿", "file")]

#: subcommands whose handler may print its error on stdout or with another prefix (生成失败：)
_NORMALISE = ("build", "validate", "collect")
_PREFIXES = ("生成失败：",)


def check_inputs(command: str, args) -> None:
    """Raise (错误：…, exit 2) when a file or folder named on the command line does not exist."""
    for dest, what, kind in INPUTS.get(command, _WORKBOOK_INPUT):
        value = getattr(args, dest, None)
        if not value:
            continue
        path = Path(value)
        if kind == "file" and not path.is_file():
            raise XlEcomError(f"找不到{what}“{path}”")
        if kind == "folder" and not path.is_dir():
            raise XlEcomError(f"找不到{what}“{path}”")


def _normalised(func):
    """Run a workflow handler, then make its error report follow the convention: on exit 2 the
    错误：lines are on stderr (moved from stdout) and every error text starts with 错误：."""

    def handler(args) -> int:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = func(args)
        text_out, text_err = out.getvalue(), err.getvalue()
        if code == ERROR:
            lines = text_out.splitlines(keepends=True)
            moved = [line for line in lines if line.startswith("错误：")]
            text_out = "".join(line for line in lines if not line.startswith("错误："))
            text_err = "".join(moved) + text_err
            for prefix in _PREFIXES:
                text_err = text_err.removeprefix(prefix)
            if not text_err.startswith("错误："):
                text_err = "错误：" + (text_err or "命令未完成。\n")
        sys.stdout.write(text_out)
        sys.stderr.write(text_err)
        return code

    return handler


def _wrap_handlers(sub, command: str | None = None) -> None:
    """Every workflow subcommand (nested ones such as ``round new`` too) runs under the convention."""
    for name, parser_of in sub.choices.items():
        top = command or name
        own = parser_of.get_default("func")
        if own is not None and top not in ("calc", "clauses", "check", "run"):
            parser_of.set_defaults(func=_conforming(top, HANDLERS.get(top, own)))
        for action in parser_of._actions:
            if isinstance(action, argparse._SubParsersAction):
                _wrap_handlers(action, top)


def _conforming(command: str, func):
    inner = _normalised(func) if command in _NORMALISE else func

    def handler(args) -> int:
        check_inputs(command, args)
        return inner(args)

    handler.__wrapped__ = func  # type: ignore[attr-defined]
    return handler


#: commands with --json output; `status` joins when it exists (its handler reads args.json)
JSON_COMMANDS = ("calc", "check", "status")

EPILOG = """\
退出码（所有命令相同）：
  0  完成
  1  完成，但有问题（如 check --strict 有警告、validate 发现错误、collect 有未汇总的行、mail 有未发出的邮件）
  2  出错，未完成（参数错误、找不到文件、输入有误等）；标准错误输出以“错误：”开头说明原因
-v 显示进度和过程信息，-vv 另显示调试信息；出现程序内部错误时 -v 显示完整的错误追踪。"""


def add_json_option(parser) -> None:
    """The --json hook: a command that prints a report can offer machine-readable output the same way."""
    parser.add_argument("--json", action="store_true", help="以 JSON 输出（UTF-8，键名固定）")


def build_parser() -> argparse.ArgumentParser:
    parser = ChineseArgumentParser(
        prog="xl-ecom",
        description="淮南市农村电商提质增效工作方案：奖补测算、目标任务分解、部门任务表、县区工作簿与邮件发送。",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xl-ecom {__version__}", help="显示版本号并退出")
    parser.add_argument("-v", "--verbose", dest="log_level", action="count", default=0,
                        help="显示进度和过程信息；-vv 显示调试信息")
    sub = parser.add_subparsers(dest="command", metavar="命令")

    p = sub.add_parser("calc", help="按条款计算一项奖补，如 xl-ecom calc AWARD_LIVESTREAM 800000")
    p.add_argument("rule", help="规则名（与 Excel 函数同名），如 AWARD_LIVESTREAM")
    p.add_argument("values", nargs="*", help="参数，顺序同 Excel 函数；金额可写 50万、1.2亿元")
    p.add_argument("--explain", action="store_true", help="逐步说明计算过程")
    p.add_argument("--date", help="政策日期，如 2020-12-31（默认取工作簿“设置”表的政策日期，没有工作簿时取方案默认日期）")
    p.add_argument("--workbook", metavar="工作簿",
                   help=f"从这个市级工作簿的“设置”表读取政策日期（默认 workbook/{WORKBOOK_NAME}，存在时）")
    add_json_option(p)
    p.set_defaults(func=cmd_calc)

    p = sub.add_parser("clauses", help="列出方案的任务、牵头配合单位、目标和奖补规则")
    p.add_argument("clause", nargs="?", help="只看某一条，如 二（三）")
    p.set_defaults(func=cmd_clauses)

    p = sub.add_parser("check", help="检查方案本身：附件合计与正文目标、编号、单位")
    p.add_argument("--source", help="方案原文 .txt（默认用程序包内的方案原文）")
    p.add_argument("--strict", action="store_true", help="有警告时退出码为 1")
    add_json_option(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="一次完成：检查方案、生成工作簿、部门任务表和县区工作簿")
    p.add_argument("--out", default=".",
                   help="工作簿所在文件夹（默认当前文件夹）；生成的文件放在工作簿“设置”表的输出文件夹（默认其下的“输出”）")
    p.set_defaults(func=cmd_run)

    for name in FRONT_ENDS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_cli(sub)
    _wrap_handlers(sub)

    from xl_ecom.frontends import bundle, setup_excel

    setup_excel.add_cli(sub)
    bundle.add_cli(sub)
    return parser


def run_command(func, args) -> int:
    """Run a handler under the one exit-code convention: 0 done, 1 done with problems, 2 error."""
    verbose = getattr(args, "log_level", 0) > 0
    try:
        code = func(args)
    except XlEcomError as exc:
        text = exc.to_text() if hasattr(exc, "to_text") else str(exc)
        print(text if text.startswith("错误：") else f"错误：{text}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        print("错误：已中断（Ctrl+C），操作未完成。", file=sys.stderr)
        return ERROR
    except OSError as exc:
        where = f"（{exc.filename}）" if exc.filename else ""
        print(f"错误：文件操作失败：{exc.strerror or exc}{where}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return ERROR
    except Exception as exc:  # noqa: BLE001 - a bug: say so in Chinese; the traceback only under -v
        print(f"错误：程序内部错误（{type(exc).__name__}：{exc}）。"
              + ("" if verbose else "加 -v 重新运行可显示详细的错误追踪，请把它发给维护人员。"), file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return ERROR
    finally:
        progress = getattr(args, "_progress", None)
        if progress is not None:
            progress.close()
    if code is None:
        return DONE
    code = int(code)
    return code if code in (DONE, DONE_WITH_PROBLEMS, ERROR) else ERROR


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level + (1 if getattr(args, "verbose", False) is True else 0))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        print("错误：请指定一个命令。", file=sys.stderr)
        return ERROR
    log.debug("命令：%s", args.command)
    return run_command(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
