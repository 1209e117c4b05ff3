"""Priority tiers of drops: the videos of each top-level drop folder run as ``premium``, ``standard`` or ``batch``
(``BODYSCRIPT_PRIORITY_TIERS``), and the run queue starts higher priorities first (``TIER_PRIORITIES``), so a
premium customer's upload overtakes a batch backfill, and every fresh drop overtakes reprocessing."""

from __future__ import annotations

from bodyscript_pipeline.drop_zone.scan import prefix_of
from bodyscript_pipeline.settings import DEFAULT_TIER, TIER_PRIORITIES, PriorityTiers


def tier_of(key: str, tiers: PriorityTiers) -> str:
    """The tier of a drop's object key (relative to the drop root): its top-level folder's, else the default
    (objects at the drop root included)."""
    return dict(tiers).get(prefix_of(key), DEFAULT_TIER)


def priority_of(tier: str) -> int:
    """The run priority of a tier."""
    return TIER_PRIORITIES[tier]
