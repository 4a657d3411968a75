"""Imports run one way: the daemon imports gicls.audit, gicls.audit never imports the daemon."""

from __future__ import annotations

import json
import subprocess
import sys

# Imports every module of gicls.audit in a fresh interpreter, then lists what got loaded.
_PROBE = """
import importlib, json, pkgutil, sys
import gicls.audit as package
for module in pkgutil.iter_modules(package.__path__):
    importlib.import_module(f"gicls.audit.{module.name}")
print(json.dumps(sorted(n for n in sys.modules if n.startswith(("gicls.daemon", "tensorflow")))))
"""


def test_the_audit_package_loads_neither_the_daemon_nor_tensorflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []
