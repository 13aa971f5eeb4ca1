"""The run of a scheduled action (plain Python, no model): its deadline, its API clients, and
the exceptions a step raises to stop (not errors of a record)."""

import time
from dataclasses import dataclass, field

import psycopg2

# PostgreSQL refusing a row because of another transaction: the record is skipped for now.
CONCURRENCY_ERRORS = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.LockNotAvailable,
    psycopg2.errors.DeadlockDetected,
)


class InfaktStop(Exception):
    """Raised inside a step to stop it for now (not an error of the record)."""

    def __init__(self, account=None, wait=None, reason=""):
        super().__init__(reason)
        self.account = account
        self.wait = wait


class InfaktAccountBlocked(InfaktStop):
    """The account cannot talk to inFakt (key, plan, permission): its work stops."""

    def __init__(self, account, message):
        super().__init__(account=account, reason=message)
        self.message = message


@dataclass
class InfaktRun:
    """One run of a scheduled action: its deadline, its clients, what it learnt on the way."""

    env: object
    deadline: float
    with_commit: bool = True
    clients: dict = field(default_factory=dict)
    blocked_accounts: set = field(default_factory=set)
    # Seconds from now when the next run should start (None: nothing planned).
    retrigger_in: float | None = None
    processed: int = 0
    # The sender's accounts still to serve, in turn (round robin).
    send_accounts: list | None = None
    # When the sender last woke the processor (monotonic), and whether it sent since.
    processor_nudged_at: float | None = None
    processor_unnudged: bool = False

    def remaining(self):
        return self.deadline - time.monotonic()

    def expired(self):
        return self.remaining() <= 0

    def commit(self):
        """End the transaction: what is done is kept, and no snapshot outlives a record."""
        if self.with_commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        else:
            self.env.flush_all()

    def rollback(self):
        if self.with_commit:
            self.env.cr.rollback()
        else:
            self.env.invalidate_all()

    def plan(self, seconds):
        """Ask for the next run in ``seconds`` (the earliest wish wins)."""
        seconds = max(0.0, seconds)
        if self.retrigger_in is None or seconds < self.retrigger_in:
            self.retrigger_in = seconds

    def client_for(self, account):
        """The API client of ``account`` for this run (created once; pacing built in)."""
        if account.id in self.blocked_accounts:
            raise InfaktStop(account=account, reason="account blocked")
        if account.id not in self.clients:
            self.clients[account.id] = account._infakt_client(self)
        return self.clients[account.id]

    def close(self):
        for client in self.clients.values():
            client.close()
        self.clients.clear()
