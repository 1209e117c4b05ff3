"""Sensors and schedules of the pipeline (drop-folder automation and retention)."""

SENSORS: list = []
