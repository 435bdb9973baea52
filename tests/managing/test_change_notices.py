"""SPEC §9: changes that matter queue a notice to the contract's contact address, with no
secret in it, in the same transaction as the change."""

from __future__ import annotations

from email import message_from_bytes, policy

from sqlalchemy import select

from mailplane.storage.models import OutboundJob
from tests.factories.api import ApiHarness

CONTACT = "c0001@contact.example.jp"
ADDRESS = "taro@e06.example.net"


def _notices(api: ApiHarness) -> list[tuple[OutboundJob, str]]:
    with api.session_factory() as session:
        jobs = session.scalars(select(OutboundJob).where(OutboundJob.kind == "notice")
                               .order_by(OutboundJob.created_at)).all()
    out = []
    for job in jobs:
        assert job.spool_path == "" and job.message is not None  # kept in the row
        message = message_from_bytes(job.message, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        out.append((job, f"{message['Subject']}\n{body.get_content()}"))
    return out


def test_create_reissue_forwarding_and_delete_each_notify_the_contact(api: ApiHarness) -> None:
    api.create_contract("C0001")
    created = api.create_address("C0001", "taro", "e06")
    base = f"/v1/contracts/C0001/addresses/{ADDRESS}"
    reissued = api.operator.post(f"{base}/password/reissue").json()
    changed = api.operator.post(f"{base}/password",
                                json={"current": reissued["password"], "new": "Sec.ret99"})
    assert changed.status_code == 200
    assert api.operator.put(f"{base}/forwarding",
                            json={"destinations": ["x@mobile.example.jp"],
                                  "keep_copy": True}).status_code == 200
    assert api.operator.put(f"{base}/spam", json={"judge": True, "quarantine": False,
                                                  "notify": False}).status_code == 200
    assert api.operator.delete(base).status_code == 204

    notices = _notices(api)
    assert len(notices) == 5  # create, reissue, change, forwarding, delete — not spam
    for job, text in notices:
        assert job.recipients == [CONTACT] and job.mail_from == ""
        assert ADDRESS in text
        for secret in (created["initial_password"]["password"], reissued["password"],
                       "Sec.ret99"):
            assert secret not in text
    texts = "\n".join(text for _job, text in notices)
    for wording in ("the address was registered", "the POP password was reissued",
                    "the POP password was changed", "the forwarding setting was changed",
                    "the address was deleted", "POPパスワードの再発行"):
        assert wording in texts


def test_a_refused_change_queues_no_notice(api: ApiHarness) -> None:
    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    before = len(_notices(api))
    response = api.operator.put(f"/v1/contracts/C0001/addresses/{ADDRESS}/forwarding",
                                json={"destinations": [ADDRESS], "keep_copy": True})
    assert response.status_code == 422
    assert len(_notices(api)) == before
