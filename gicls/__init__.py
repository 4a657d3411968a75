"""gicls: wireless capsule endoscopy image classification (research use only)."""

import os
from importlib.metadata import PackageNotFoundError, version

# TensorFlow's C++ info and warning logs would bury our own output; errors still show.
# Users can override it by setting the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    __version__ = version("gicls")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
