from __future__ import annotations

import subprocess
import sys

import pytest

from xl_ecom.common.errors import InputError
from xl_ecom.frontends import cli, udfs


def test_udfs_are_plain_callables_with_chinese_descriptions():
    for name, spec in udfs.UDF_SPECS.items():
        assert callable(getattr(udfs, name))
        assert any("\u4e00" <= ch <= "\u9fff" for ch in spec.description), name
        for arg in spec.args:
            assert any("\u4e00" <= ch <= "\u9fff" for ch in arg.doc), (name, arg.name)
    assert [a.name for a in udfs.UDF_SPECS["AWARD_LINKAGE"].args] == [
        "annual_purchase", "agreement_years", "online_purchase", "rate"]
    assert [a.optional for a in udfs.UDF_SPECS["TRAINING_SUBSIDY"].args] == [False, False, True]
    assert udfs.UDF_SPECS["EXPLAIN"].args[1].vararg


def test_required_udf_names(plan):
    expected = {
        "AWARD_UPLINK", "AWARD_LINKAGE", "AWARD_PLATFORM", "SUBSIDY_EXPO", "SUBSIDY_PROMO", "AWARD_TOURISM",
        "SUBSIDY_FACILITY", "SUBSIDY_COLD_RENT", "TRAINING_SUBSIDY", "AWARD_LIVESTREAM", "AWARD_POOR_SITE",
        "SUBSIDY_POVERTY_PURCHASE", "REGION_UPLIFT", "CLAUSE_TEXT", "CLAUSE_DEPARTMENTS", "COUNTY_TARGET", "EXPLAIN",
    }
    assert set(udfs.UDF_SPECS) == expected


def test_clause_lookups():
    assert udfs.CLAUSE_TEXT("二(六)").startswith("增强培训实效。")
    assert "单次补助金额不超过5万元" in udfs.CLAUSE_TEXT("TRAINING_SUBSIDY")
    assert udfs.CLAUSE_DEPARTMENTS("二（一）") == "牵头：市商务局；配合：市财政局"
    assert udfs.CLAUSE_DEPARTMENTS("二（八）-2") == "牵头：淮南银保监局；配合：市地方金融监管局、中国人民银行淮南市中心支行"
    assert udfs.COUNTY_TARGET("田家庵区", "年上行超1000万元企业") == 2
    assert udfs.COUNTY_TARGET("寿县", "示范村") == 3
    with pytest.raises(InputError, match="“合肥市”"):
        udfs.COUNTY_TARGET("合肥市", "示范村")
    with pytest.raises(InputError, match="“二（九）”"):
        udfs.CLAUSE_TEXT("二（九）")


def test_explain_shows_clause_text_threshold_rate_cap():
    text = udfs.EXPLAIN("AWARD_UPLINK", 200_000_000)
    assert "二（一）" in text
    assert "对经认定的农村产品上行超1000万元的电商经营主体" in text
    assert "“超”不含本数" in text and "满足" in text
    assert "1%" in text and "上限起作用" in text
    assert "1,000,000.00元" in text
    text = udfs.EXPLAIN("AWARD_LIVESTREAM", 500000)
    assert "“达到50万元”" in text and "50,000.00元" in text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "xl_ecom", *args], capture_output=True, text=True, timeout=120)


def test_cli_calc():
    r = run_cli("calc", "AWARD_LIVESTREAM", "800000")
    assert r.returncode == 0
    assert "50,000.00 元" in r.stdout
    r = run_cli("calc", "AWARD_UPLINK", "12,345,678.90", "--explain")
    assert r.returncode == 0 and "123,456.79元" in r.stdout and "四舍五入" in r.stdout


def test_cli_bad_input_is_a_chinese_message_not_a_traceback():
    r = run_cli("calc", "AWARD_UPLINK", "abc")
    assert r.returncode == 2
    assert "“abc”" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("calc", "NO_SUCH_RULE", "1")
    assert r.returncode == 2 and "“NO_SUCH_RULE”" in r.stderr


def test_cli_check_and_clauses(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "合计14个" in out and "（2）" in out
    assert cli.main(["check", "--strict"]) == 1
    capsys.readouterr()
    assert cli.main(["clauses"]) == 0
    out = capsys.readouterr().out
    assert "二（八）-2  牵头：淮南银保监局" in out


def test_every_front_end_registers_its_subcommand():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("calc", "clauses", "check", "run", "build", "departments", "counties", "collect", "validate",
                 "refresh", "mail"):
        assert name in sub.choices, name


def test_cli_run_is_the_main_job(tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "示范村" in out and "14" in out
    assert (tmp_path / "目标任务分解表.xlsm").exists()
    assert len(list((tmp_path / "输出" / "部门任务表").glob("*.xlsx"))) == 17
    assert len(list((tmp_path / "输出" / "县区工作簿").glob("*.xlsx"))) == 8
