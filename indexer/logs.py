"""Logging for Victor's long-running processes: Victor's own lines at INFO, libraries quiet.

The webhook app (under gunicorn) and `victor worker` call `setup_logging`. Libraries log
at WARNING unless asked (VICTOR_LIBRARY_LOG_LEVEL): the embedded PostgreSQL's pgserver,
for one, logs its pg_ctl command lines and postmaster details at INFO in every process
that joins it, which buried the webhook's own lines in gunicorn's log.
"""

from __future__ import annotations

import logging

from indexer.config import Settings

VICTOR_LOGGERS = ("indexer", "webhook", "victor")
FORMAT = "%(levelname)s %(name)s: %(message)s"


def setup_logging(settings: Settings) -> None:
    """Victor's loggers at VICTOR_LOG_LEVEL, every other logger at VICTOR_LIBRARY_LOG_LEVEL.

    A root logger already more verbose (`victor -v`) stays so; handlers already set up
    (by the embedding program) are kept.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=FORMAT)
    libraries = logging.getLevelName(settings.library_log_level)
    root.setLevel(min(root.level or logging.WARNING, libraries))
    for name in VICTOR_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
