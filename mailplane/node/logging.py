"""Process-wide logging set-up, shared by the node process and its MX worker processes.

aiosmtpd logs every connection and command at INFO on ``mail.log``: a measurable share of
MX CPU (docs/performance.md, ~5 % per worker) and nothing an operator reads — our own logs
say what matters.  Each spawned MX worker is a fresh interpreter, so it must be quieted
there too, not only in the process that parsed the command line.
"""

from __future__ import annotations

import logging


def configure_logging(level: str, *, with_pid: bool = False) -> None:
    where = "%(name)s[%(process)d]" if with_pid else "%(name)s"
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {where}: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("mail.log").setLevel(logging.WARNING)
