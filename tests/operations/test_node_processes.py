"""Which processes a node starts (mailplane/node/processes.py)."""

from __future__ import annotations

import os

from mailplane.config.settings import Settings
from mailplane.node.processes import ProcessPlan, plan_processes
from tests.conftest import SettingsFactory

ALL = ("api", "mx", "submission", "pop3", "worker")


def test_every_role_sends_from_its_own_process(settings: Settings) -> None:
    main, extra = plan_processes(settings.model_copy(
        update={"mx": settings.mx.model_copy(update={"workers": 1})}), ALL)
    assert main == ("api", "mx", "submission", "pop3")
    assert extra == [ProcessPlan("mailplane-outbound", ("worker",))]


def test_extra_mx_processes_and_the_worker(make_settings: SettingsFactory) -> None:
    main, extra = plan_processes(make_settings(mx={"workers": 3}), ALL)
    assert "worker" not in main and "mx" in main
    assert [p.roles for p in extra] == [("mx",), ("mx",), ("worker",)]


def test_a_worker_alone_or_kept_in_process_stays_in_the_node(
    make_settings: SettingsFactory,
) -> None:
    assert plan_processes(make_settings(), ("worker",)) == (("worker",), [])
    kept = make_settings(outbound={"own_process": False}, mx={"workers": 1})
    assert plan_processes(kept, ("mx", "worker")) == (("mx", "worker"), [])


def test_the_node_starts_one_mx_process_per_cpu_by_default(
    make_settings: SettingsFactory,
) -> None:
    """Issue 20: with connection limits counted per node, ``mx.workers`` defaults to the
    CPU count."""
    cpus = min(os.cpu_count() or 1, 64)
    settings = make_settings()
    assert settings.mx.workers == cpus
    main, extra = plan_processes(settings, ("mx",))
    assert main == ("mx",) and [p.roles for p in extra] == [("mx",)] * (cpus - 1)
