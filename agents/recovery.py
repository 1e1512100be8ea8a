"""Recovery: what the worker does so that no restart, crash or lost broker loses a join.

Three guards (docs/decisions/crash-safety.md): table recovery reads each changelog to its
real end (`exact_recovery_highwaters`); after an unclean stop the join table is rebuilt
from its changelog alone (`drop_join_after_unclean_stop`); and a broker that lost its log
(a new epoch) drops the table state that referred to it (`forget_a_lost_log`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from streams.broker import remember_epoch, remembered_epoch, true_end_offsets

log = logging.getLogger(__name__)

CLEAN_STOP = "worker.clean"  # written when the worker stops cleanly; removed at start


def exact_recovery_highwaters(bootstrap: str) -> None:
    """Faust recovers a table by reading its changelog up to the end offsets the broker
    reports. Tansu's lag its log (`true_end_offsets`), so recovery could stop short and
    leave a partition's table older than the changelog. In the worker process, recovery
    reads on from the reported end to the real one; on Kafka that read finds nothing."""
    from faust.tables.recovery import Recovery

    build = Recovery._build_highwaters
    if getattr(build, "loopwise_exact", False):
        return

    async def exact(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await build(self, consumer, tps, destination, title)
        reported = {(tp.topic, tp.partition): destination[tp] + 1 for tp in tps}
        ends = await true_end_offsets(bootstrap, reported)
        for tp in tps:
            last = ends[(tp.topic, tp.partition)] - 1
            if last > destination[tp]:
                log.info("%s[%d] ends at %d, not %d", tp.topic, tp.partition, last, destination[tp])
                destination[tp] = last

    exact.loopwise_exact = True  # type: ignore[attr-defined]
    Recovery._build_highwaters = exact  # type: ignore[method-assign]  # see the docstring


def forget_a_lost_log(data_dir: Path, epoch: str) -> bool:
    """Drop the worker's table state if the broker's epoch changed since the last start
    (the broker lost its log, and the tables referred to it); True if it was dropped."""
    epoch_file = data_dir / "worker.epoch"
    before = remembered_epoch(epoch_file)
    lost = before is not None and before != epoch
    if lost:
        log.warning(
            "the broker lost its log (epoch %s -> %s): dropping the worker's table state, "
            "which referred to the lost log",
            before,
            epoch,
        )
        shutil.rmtree(data_dir / "worker", ignore_errors=True)
    remember_epoch(epoch_file, epoch)
    return lost


def drop_join_after_unclean_stop(data_dir: Path) -> bool:
    """Delete the join table's local RocksDB unless the worker last stopped cleanly; True
    if it did. After a SIGKILL the local table is newer than its changelog, and Faust
    replays the changelog from its last acknowledged offset over it: keys whose last
    writes never reached the changelog keep their newer values, the others go back to
    older ones, and the table mixes two moments (found with scripts/chaos.py: a join entry
    back to "reward only" while the decision's stored position was past the decision;
    1 of 8,880 decisions never learned in 8 kills). The changelog alone is a consistent
    prefix, entries before their positions; what came after it is joined again from the
    positions, and the model replica's ledger drops the examples emitted twice."""
    marker = data_dir / CLEAN_STOP
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    tables = sorted((data_dir / "worker" / "v1" / "tables").glob("join-*.db"))
    if clean or not tables:
        return False
    for table in tables:
        shutil.rmtree(table)
    return True
