"""gicls: wireless capsule endoscopy image classification (research use only)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gicls")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
