"""Where a run is asked for, and the daemon that listens: a save (watcher, daemon), a commit (hook,
hooks_install, commits), parameters given with a request (params). The daemon also starts what
the queue holds, as many at once as each executor takes.
"""
