"""Replay's fold: the views' final rows built in memory from the published events, by the
same rules as the live projection (`view_rules`, `projection.history_row`,
`projection._problem`), then written once, in bulk (`bulk.py`).

Every event the live projection would set aside is set aside here too (recorded in the
set-aside log); a row it would fail to insert (its key already taken) likewise. A
published type the fold has no rule for raises `UnknownToFold`: replay then takes the
slow road, the live projection itself, rather than drop what that type does."""

import logging

from services.snapshots.log_reader import Published
from services.snapshots.projection import _problem, history_row
from services.snapshots.view_rules import DELETE, HISTORY_ONLY, INSERT, RULES
from services.snapshots.views import LIVE

log = logging.getLogger(__name__)
OMITTED = type("Omitted", (), {"__repr__": lambda self: "OMITTED"})()


class UnknownToFold(Exception):
    """A published event type with no rule in `view_rules` (nor listed as history only)."""

    def __init__(self, event_type: str):
        super().__init__(f"replay's fold has no rule for {event_type!r}")
        self.event_type = event_type


class Fold:
    """The final rows of the views: `tables['snapshots' | 'clusters']` by key, `history` in
    order, and the position reached."""

    def __init__(self):
        self.tables: dict[str, dict[str, dict]] = {"snapshots": {}, "clusters": {}}
        self.history: list[dict] = []
        self.position = 0
        self.applied = 0
        #: A new row: every column left out but those its INSERT gives (SQL NULL, where a
        #: None given to a JSON column is JSON's null).
        self._empty = {name: dict.fromkeys(table.c.keys(), OMITTED) for name, table in
                       (("snapshots", LIVE.snapshots), ("clusters", LIVE.clusters))}
        #: (position, type, reason) of the events set aside: recorded once the rows are written.
        self.set_aside: list[tuple[int, str, str]] = []

    def apply(self, events: list[Published], up_to: int) -> None:
        tables, history = self.tables, self.history
        for event in events:
            if not event.checked:
                problem = _problem(event.envelope)
                if problem:
                    self._put_aside(event, problem)
                    continue
            rule = RULES.get(event.type)
            if rule is not None:
                changes = rule(event.data, event)
                taken = next((c for c in changes if c.action == INSERT and c.key in tables[c.table]), None)
                if taken is not None:  # the live projection's INSERT fails: set aside
                    self._put_aside(event, f"IntegrityError: {taken.table} already holds {taken.key!r}")
                    continue
                for change in changes:
                    self._make(change)
            elif event.type not in HISTORY_ONLY:
                raise UnknownToFold(event.type)
            history.append(history_row(event))
            self.applied += 1
        self.position = up_to

    def _make(self, change) -> None:
        rows = self.tables[change.table]
        if change.only_if is not None:
            other, key, column = change.only_if
            row = self.tables[other].get(key)
            value = row.get(column, OMITTED) if row is not None else OMITTED
            if value is OMITTED or not value:  # left out: SQL NULL
                return
        if change.action == INSERT:
            rows[change.key] = {**self._empty[change.table], "key": change.key, **change.values}
        elif change.action == DELETE:
            rows.pop(change.key, None)
        else:
            row = rows.get(change.key)
            if row is not None:
                row.update(change.values)

    def _put_aside(self, event: Published, reason: str) -> None:
        log.error("replay set aside event %s (%s, sequence %s): %s", event.id, event.type,
                  event.sequence, reason)
        self.set_aside.append((min(int(event.sequence or 0), 2**63 - 1), event.type, reason))
