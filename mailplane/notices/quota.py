"""The one notice an address gets when its mailbox — inbox and quarantine together, what
the quota counts (issue 20) — passes 90 % of its quota (SPEC §8).

"One notice" is kept as a marker file in the address's Maildir (``.quota-notice``),
created with O_EXCL so that several MX processes or nodes sharing the volume send it once.
Usage falling back under the threshold removes the marker, so the next time it fills up
the customer hears about it again.  The notice is delivered straight into the address's
own inbox (it is a hosted address), durably, like any other message.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from mailplane.config.settings import Settings
from mailplane.mailstore.folders import QUARANTINE, folder_dir
from mailplane.mailstore.maildir import deliver, directory_size, folder_size
from mailplane.mailstore.paths import mailbox_dir
from mailplane.notices.render import build_notice, local_time, render_template

log = logging.getLogger(__name__)

THRESHOLD = 0.9
MARKER = ".quota-notice"


def over_threshold(used: int, quota: int) -> bool:
    return quota > 0 and used >= THRESHOLD * quota


def update_quota_notice(settings: Settings, *, address: str, used: int, quota: int,
                        now: datetime) -> bool:
    """Send the notice if ``used`` just passed the threshold; re-arm it below.  Blocking
    (file I/O): run in a thread.  Returns True when a notice was delivered."""
    maildir = mailbox_dir(settings.maildir_root, address)
    marker = maildir / MARKER
    if not over_threshold(used, quota):
        marker.unlink(missing_ok=True)
        return False
    maildir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False  # already told (by this or another process)
    os.close(fd)
    # 迷惑メール, and items still in the layout before it was a folder.
    quarantined = (folder_size(folder_dir(maildir, QUARANTINE))
                   + directory_size(mailbox_dir(settings.quarantine_root, address)))
    try:
        subject, body = render_template(settings.templates_dir, "quota_notice.txt", {
            "address": address,
            "percent": str(round(THRESHOLD * 100)),
            "used_mb": f"{used / 1024**2:.1f}",
            "quarantine_mb": f"{quarantined / 1024**2:.1f}",
            "quota_mb": f"{quota / 1024**2:.0f}",
            "when": local_time(settings, now),
        })
        deliver(settings.maildir_root, address,
                build_notice(settings, to=address, subject=subject, body=body, now=now),
                now=now)
    except BaseException:
        marker.unlink(missing_ok=True)  # not sent: let the next delivery try again
        raise
    log.info("quota notice sent to %s (%d of %d bytes)", address, used, quota)
    return True
