"""Run priority tags: the queue (QueuedRunCoordinator) starts runs by ``dagster/priority``, highest first; the
tier tag lets the UI filter runs by tier."""

from __future__ import annotations

from bodyscript_pipeline.drop_zone.tiers import priority_of, tier_of
from bodyscript_pipeline.settings import PriorityTiers

PRIORITY_TAG = "dagster/priority"
TIER_TAG = "bodyscript/tier"


def drop_run_tags(key: str, tiers: PriorityTiers) -> dict[str, str]:
    """The priority tags of the run of a dropped object (key relative to the drop root)."""
    tier = tier_of(key, tiers)
    return {PRIORITY_TAG: str(priority_of(tier)), TIER_TAG: tier}
