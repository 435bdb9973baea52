"""Process-wide logging set-up, shared by the node process and its MX worker processes.

aiosmtpd logs every connection and command at INFO on ``mail.log``: a measurable share of
MX CPU (docs/performance.md, ~5 % per worker) and nothing an operator reads — our own logs
say what matters.  Each spawned MX worker is a fresh interpreter, so it must be quieted
there too, not only in the process that parsed the command line.  What it still writes
(warnings any client can trigger again and again) is folded into one line per message
kind per minute (:func:`~mailplane.net.throttled_log.throttle_logger`).
"""

from __future__ import annotations

import logging

from mailplane.net.throttled_log import throttle_logger


def configure_logging(level: str, *, with_pid: bool = False) -> None:
    where = "%(name)s[%(process)d]" if with_pid else "%(name)s"
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {where}: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        throttle_logger("mail.log")  # at DEBUG every line is wanted
