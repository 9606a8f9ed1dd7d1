"""Requests waiting and runs in progress on this machine: the queue (entries), what comes in
(intake), the locks of running processes (active), runs whose process died (orphans), and saying
that a run ended (notify).
"""
