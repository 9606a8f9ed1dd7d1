"""The ground every room stands on: mm4.toml and the environment (config, checks, plugins: the
executor types), errors and the exit-code table, a notebook's tag (tags), what a run is told
(runenv), durations, subprocesses (proc), git, atomic writes (fsutil), names and quoting, what
may reach a terminal (terminal), crash logs.
"""
