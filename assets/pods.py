"""Op tags placing each asset's step pod under the k8s executor (settings in bodyscript_pipeline.k8s_pods)."""

import functools

from bodyscript_pipeline.k8s_pods import op_tags
from bodyscript_pipeline.settings import Settings


@functools.cache
def _settings() -> Settings:
    return Settings.from_env()


def pod_tags(step: str) -> dict[str, str]:
    return op_tags(step, _settings())
