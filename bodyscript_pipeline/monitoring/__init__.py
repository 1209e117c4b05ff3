"""The Dagster-free half of the Prometheus exporter: its metric families, the lake's bytes per table, the
drop-zone scan summary and the background refresh loop. The half that reads the Dagster instance is
``resources/metrics_exporter.py``; ``bodyscript monitor`` joins the two."""
