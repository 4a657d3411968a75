"""gicls: wireless capsule endoscopy image classification (research use only)."""

import os
from importlib.metadata import PackageNotFoundError, version

from gicls import quiet_tensorflow

# TensorFlow's C++ logs would bury our own output. Level 3 hides its INFO, WARNING and
# ERROR lines (a C++ error that matters also reaches Python as an exception; the one seen on
# every CPU-only machine is "failed call to cuInit"). Users can set the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# What TensorFlow prints while its libraries load comes before that setting is read.
quiet_tensorflow.install()

try:
    __version__ = version("gicls")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
