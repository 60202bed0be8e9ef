"""The one-node Slurm cluster the Slurm backend's tests run against (real daemons)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers.slurm_cluster import SlurmCluster, ensure_installed


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """munged + slurmctld + slurmd on 127.0.0.1, for the whole session (about a second to
    start); skipped only when the Slurm packages are absent and cannot be installed."""
    reason = ensure_installed()
    if reason is not None:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm test cluster runs slurmd, which needs root")
    cluster = SlurmCluster()
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.stop()
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The cluster, with ``SLURM_CONF`` pointing at it for this test's own calls too."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    return slurm_cluster
