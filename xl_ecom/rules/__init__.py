"""The typed rule model: a rule of plan.yaml resolved as of a policy date (see model.py)."""

from xl_ecom.rules.model import AMOUNT_KINDS, Body, Cap, Condition, Factor, Fixed, PerUnit, Rate, Tier, Tiers, Unit

__all__ = ["AMOUNT_KINDS", "Body", "Cap", "Condition", "Factor", "Fixed", "PerUnit", "Rate", "Tier", "Tiers", "Unit"]
