"""The input tables counties report, and how their columns feed the plan's rules.

This is the one schema shared by the city workbook builder, the county workbooks, collect,
validate and refresh.  Rates, caps and thresholds are not here: a column only says which rule
input it is; the rule itself lives in plan.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

from xl_ecom.policy import load_plan


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str  # county | text | money | count | years | rate | choice | date
    required: bool = True
    choices: tuple[str, ...] = ()
    width: float = 14

    @property
    def numeric(self) -> bool:
        return self.kind in ("money", "count", "years", "rate")


@dataclass(frozen=True)
class Award:
    """A rule applied row by row: rule input name -> column key (or a literal via '=')."""

    rule: str
    inputs: dict
    header: str
    key: str

    @property
    def cumulative_by(self) -> str | None:
        """The column grouping the rule's cumulative cap, as plan.yaml declares it (``group_by``)."""
        return load_plan().rules[self.rule].cumulative_by


@dataclass(frozen=True)
class InputTable:
    key: str  # ASCII, used for Excel table names (T_SALES)
    sheet: str  # Chinese sheet name
    title: str
    columns: tuple[Column, ...]
    awards: tuple[Award, ...] = ()
    unique: tuple[str, ...] = ()  # columns that identify a row (duplicates are reported)
    note: str = ""

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]


def _county() -> Column:
    return Column("county", "县区", "county", width=12)


DEMO_KINDS = ("省级电商示范镇", "省级电商示范村", "省级特色旅游名镇", "省级特色旅游名村")

TABLES: tuple[InputTable, ...] = (
    InputTable(
        key="T_SALES",
        sheet="企业销售",
        title="电商企业销售情况",
        columns=(
            _county(),
            Column("enterprise", "企业名称", "text", width=24),
            Column("credit_code", "统一社会信用代码", "text", required=False, width=22),
            Column("uplink_sales", "上行网络销售额(元)", "money", required=False, width=18),
            Column("platform_retail", "知名平台网络零售额(元)", "money", required=False, width=18),
            Column("livestream_sales", "电商直播网上零售额(元)", "money", required=False, width=18),
        ),
        awards=(
            Award("AWARD_UPLINK", {"sales": "uplink_sales"}, "上行奖励(元)", "award_uplink"),
            Award("AWARD_PLATFORM", {"retail": "platform_retail"}, "平台销售奖励(元)", "award_platform"),
            Award("AWARD_LIVESTREAM", {"sales": "livestream_sales"}, "直播奖励(元)", "award_livestream"),
        ),
        unique=("county", "enterprise"),
    ),
    InputTable(
        key="T_LINKAGE",
        sheet="利益联结",
        title="电商企业与基地、合作社购销协议",
        columns=(
            _county(),
            Column("enterprise", "企业名称", "text", width=24),
            Column("partner", "合作基地或合作社", "text", width=24),
            Column("agreement_years", "协议年限(年)", "years", width=12),
            Column("annual_purchase", "年采购额(元)", "money", width=16),
            Column("online_purchase", "网销采购额(元)", "money", required=False, width=16),
        ),
        awards=(
            Award(
                "AWARD_LINKAGE",
                {"annual_purchase": "annual_purchase", "agreement_years": "agreement_years", "online_purchase": "online_purchase"},
                "利益联结奖励(元)",
                "award_linkage",
            ),
        ),
        unique=("county", "enterprise", "partner"),
    ),
    InputTable(
        key="T_EXPO",
        sheet="展销活动",
        title="参加省级及以上农产品展销活动",
        columns=(
            _county(),
            Column("enterprise", "企业名称", "text", width=24),
            Column("event", "展销活动名称", "text", width=24),
            Column("booth_fees", "展位费(元)", "money", width=14),
            Column("personnel_costs", "人员费用(元)", "money", width=14),
        ),
        awards=(
            Award("SUBSIDY_EXPO", {"booth_fees": "booth_fees", "personnel_costs": "personnel_costs"}, "展销补助(元)", "subsidy_expo"),
        ),
        unique=("county", "enterprise", "event"),
    ),
    InputTable(
        key="T_PROMO",
        sheet="促销活动",
        title="县区组织的产销对接、直播促销活动",
        columns=(
            _county(),
            Column("event", "活动名称", "text", width=26),
            Column("date", "活动日期", "date", required=False, width=12),
            Column("event_sales", "活动网销额(元)", "money", width=16),
        ),
        awards=(
            Award("SUBSIDY_PROMO", {"event_sales": "event_sales"}, "活动补助(元)", "subsidy_promo"),
        ),
        unique=("county", "event", "date"),
        note="每县区累计补助封顶，按表中行序累计。",
    ),
    InputTable(
        key="T_TRAINING",
        sheet="电商培训",
        title="电商培训",
        columns=(
            _county(),
            Column("training", "培训名称", "text", width=26),
            Column("kind", "培训类型", "choice", choices=("基础", "高管"), width=10),
            Column("attendees", "参训人数", "count", width=10),
            Column("costs", "场租资料授课等费用(元)", "money", width=18),
        ),
        awards=(
            Award("TRAINING_SUBSIDY", {"attendees": "attendees", "costs": "costs", "kind": "kind"}, "培训补助(元)", "subsidy_training"),
        ),
        unique=("county", "training"),
    ),
    InputTable(
        key="T_FACILITY",
        sheet="设施冷链",
        title="流通设施设备投资与冷冻冷藏设施租赁",
        columns=(
            _county(),
            Column("enterprise", "企业名称", "text", width=24),
            Column("project", "项目名称", "text", width=24),
            Column("investment", "设施设备投资额(元)", "money", required=False, width=18),
            Column("rent", "冷冻冷藏设施租金(元)", "money", required=False, width=18),
        ),
        awards=(
            Award("SUBSIDY_FACILITY", {"investment": "investment"}, "设施补助(元)", "subsidy_facility"),
            Award("SUBSIDY_COLD_RENT", {"rent": "rent"}, "租金补助(元)", "subsidy_cold_rent"),
        ),
        unique=("county", "enterprise", "project"),
    ),
    InputTable(
        key="T_POOR_SITE",
        sheet="贫困村网点",
        title="贫困村电商网点",
        columns=(
            _county(),
            Column("site", "网点名称", "text", width=24),
            Column("village", "所在村", "text", required=False, width=16),
            Column("sales", "农产品上行年网络销售额(元)", "money", width=20),
        ),
        awards=(Award("AWARD_POOR_SITE", {"sales": "sales"}, "网点奖励(元)", "award_poor_site"),),
        unique=("county", "site"),
    ),
    InputTable(
        key="T_PURCHASE",
        sheet="扶贫收购",
        title="收购贫困村、贫困户农村产品",
        columns=(
            _county(),
            Column("enterprise", "企业名称", "text", width=24),
            Column("amount", "收购金额(元)", "money", width=16),
            Column("order_based", "订单包销并免费发放生产资料", "choice", required=False, choices=("否", "是"), width=14),
        ),
        awards=(
            Award("SUBSIDY_POVERTY_PURCHASE", {"amount": "amount", "order_based": "order_based"}, "收购补助(元)", "subsidy_purchase"),
        ),
        unique=("county", "enterprise"),
    ),
    InputTable(
        key="T_DEMO",
        sheet="示范创建",
        title="省级电商示范镇村、特色旅游名镇名村",
        columns=(
            _county(),
            Column("name", "镇村名称", "text", width=20),
            Column("kind", "类型", "choice", choices=DEMO_KINDS, width=18),
            Column("document", "认定文号", "text", required=False, width=22),
        ),
        unique=("county", "name", "kind"),
    ),
)


def table(key: str) -> InputTable:
    for t in TABLES:
        if t.key == key or t.sheet == key:
            return t
    raise KeyError(key)


@dataclass(frozen=True)
class Actual:
    """How a county's actual figure for an annex column is counted from the input tables."""

    annex_key: str
    table: str
    kind_column: str | None = None
    kind_value: str | None = None
    rule_condition: tuple[str, str] | None = None  # (rule, column): count rows meeting the rule's threshold


ACTUALS: tuple[Actual, ...] = (
    Actual("demo_towns", "T_DEMO", "kind", "省级电商示范镇"),
    Actual("demo_villages", "T_DEMO", "kind", "省级电商示范村"),
    Actual("uplink_enterprises", "T_SALES", rule_condition=("AWARD_UPLINK", "uplink_sales")),
)

def tourism_counts(plan=None) -> dict:
    """旅游名镇名村奖补按县区汇总计算（每镇、每村定额）：input -> (table, column, value), from the
    rule's ``paid_per`` in plan.yaml."""
    rule = (plan or load_plan()).rules["AWARD_TOURISM"]
    return {k: (c["table"], c["column"], c["value"]) for k, c in (rule.paid_per or {"counts": {}})["counts"].items()}


TOURISM_COUNTS = tourism_counts()


def counties() -> tuple[str, ...]:
    return load_plan().counties
