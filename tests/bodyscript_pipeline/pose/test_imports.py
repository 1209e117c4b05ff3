"""MediaPipe's Tasks API imported with matplotlib deferred: not loaded by pose processes, whole on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import importlib.util, json, sys
from bodyscript_pipeline.pose.estimator import preload
preload()
kinds = {name: type(sys.modules[name]).__name__ for name in ("matplotlib", "matplotlib.pyplot")}
deferred = sorted(name for name, kind in kinds.items() if kind == "DeferredModule")
found = importlib.util.find_spec("matplotlib.pyplot").name
from mediapipe.tasks.python.vision import drawing_utils
figure = drawing_utils.plt.figure(figsize=(1, 1))  # MediaPipe's own use of pyplot: the real one, loaded now
import matplotlib
print(json.dumps({"deferred": deferred, "found": found, "figure": type(figure).__name__,
                  "loaded": type(sys.modules["matplotlib"]).__name__, "version": bool(matplotlib.__version__)}))
"""


def test_pose_processes_defer_matplotlib_until_it_is_used() -> None:
    env = {**os.environ, "MPLBACKEND": "agg"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "deferred": ["matplotlib", "matplotlib.pyplot"],
        "found": "matplotlib.pyplot",
        "figure": "Figure",
        "loaded": "module",
        "version": True,
    }
