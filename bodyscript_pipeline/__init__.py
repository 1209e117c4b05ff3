"""BodyScript Pipeline: videos of people in, pose data out.

This package is the Dagster-free core: settings, storage, video I/O, pose estimation, drawing, metrics,
schemas and the CLI. ``bodyscript_pipeline.definitions`` assembles the Dagster layer (``assets/``,
``resources/``, ``sensors/``) into ``defs``.
"""

__version__ = "0.1.0"
