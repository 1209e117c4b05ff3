"""What the drop-zone sensor's memory (in the harness's Dagster instance) holds."""

from __future__ import annotations

from bodyscript_pipeline.drop_zone.scan import ScanState, remembered
from sensors.drop_memory import KeyValueScanMemory
from tests.support.sensor_harness import SensorHarness


def known_to(harness: SensorHarness, *keys: str) -> set[str]:
    """Which of these drop-zone keys the sensor's memory holds a current version of."""
    return remembered(KeyValueScanMemory(harness.instance.run_storage), ScanState.decode(harness.cursor), keys)
