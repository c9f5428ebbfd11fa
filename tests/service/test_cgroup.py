"""The default worker count follows the container's CPU quota, not the host's cores."""

from __future__ import annotations

import os

import pytest

from diabetes_service.supervisor.cgroup import cpu_limit

HOST_CPUS = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, HOST_CPUS),
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU still needs one worker
        ({"cpu.max": "150000 100000\n"}, min(2, HOST_CPUS)),
        ({"cpu.max": "6400000 100000\n"}, HOST_CPUS),  # never more than the CPUs we may run on
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, HOST_CPUS),
        ({}, HOST_CPUS),
    ],
)
def test_cpu_limit_from_cgroup_files(tmp_path, files, expected):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    assert cpu_limit(tmp_path) == expected
