"""Which processes a node starts (mailplane/node/processes.py)."""

from __future__ import annotations

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
    kept = make_settings(outbound={"own_process": False})
    assert plan_processes(kept, ("mx", "worker")) == (("mx", "worker"), [])
