"""Which queued run starts when, and the processes runs live in: how many at once each executor
takes (``capacity``), starting, reaping and re-attaching run processes (``runs``), and what
listens for a run's end (``after``: the report page, notifications)."""
