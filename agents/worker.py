"""`loopwise worker`: prepare the topics, recover from what the last run left, run the app."""

from __future__ import annotations

import asyncio
import logging

import faust

from agents.app import create_app
from agents.recovery import CLEAN_STOP, drop_join_after_unclean_stop, forget_a_lost_log
from streams.broker import prepare
from streams.settings import Settings

log = logging.getLogger(__name__)


def run(settings: Settings) -> None:
    """Prepare topics, recover from a broker that lost its log, and run the worker."""
    broker = asyncio.run(prepare(settings))
    forget_a_lost_log(settings.data_dir, broker.epoch)
    if drop_join_after_unclean_stop(settings.data_dir):
        log.warning("the worker did not stop cleanly: its join table is rebuilt from the changelog")
    # On Tansu too: recovery reads to the real end of a changelog (`exact_recovery_highwaters`),
    # so a table that remembers more than the changelog holds means a lost log.
    check = settings.consistency_check == "on"
    app = create_app(settings, consistency_check=check)
    # the logging `loopwise worker` configured (streams.logs), not Faust's own
    worker = faust.Worker(app, loglevel="info", quiet=True, override_logging=False)
    worker.spinner = None  # Faust turns it off only when it configures logging itself
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:  # Faust always ends so; 0 after SIGTERM, once it stopped
        if stop.code in (0, None):  # its tables and flushed their changelogs
            (settings.data_dir / CLEAN_STOP).touch()
        raise
