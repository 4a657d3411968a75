"""Joining Ray through [cluster] address (gicls.cluster), against a real local cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gicls.cluster import connect
from gicls.errors import ConfigError


def last_line_printed(code: str) -> str:
    """The last line ``code`` prints in a fresh Python (after whatever ray prints itself)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return out.strip().splitlines()[-1]


def test_joins_the_cluster_at_the_configured_address(ray_cluster) -> None:
    ray = connect(ray_cluster.address)
    try:
        assert sum(node["Alive"] for node in ray.nodes()) == 2
        assert connect("unused:1") is ray  # already joined: a second call changes nothing
    finally:
        ray.shutdown()


def test_local_starts_a_private_ray_beside_a_running_cluster(ray_cluster) -> None:
    # In a process of its own: a driver that has joined one Ray and left it cannot create
    # actors in the next one it joins (ray 2.60), which would break later tests here.
    code = (
        "from gicls.cluster import PRIVATE_CLUSTER, connect\n"
        "ray = connect(PRIVATE_CLUSTER)\n"
        "print(ray.get_runtime_context().gcs_address, sum(n['Alive'] for n in ray.nodes()))\n"
    )
    address, nodes = last_line_printed(code).split()
    # Not the session's two-node cluster (the latest one started on this machine).
    assert address != ray_cluster.address and nodes == "1"


def test_the_single_machine_product_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "import gicls.cluster, gicls.config, gicls.daemon.service, gicls.training.pipeline\n"
        "import gicls.daemon.ray_pool  # the pool module itself: ray only once a pool starts\n"
        "print('ray' in sys.modules)\n"
    )
    assert last_line_printed(code) == "False"


def test_a_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    with pytest.raises(ConfigError, match=r"gicls\[cluster\]"):
        connect("auto")
