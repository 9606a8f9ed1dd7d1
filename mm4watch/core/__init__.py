"""The ground every room stands on: mm4.toml and the environment (config), errors and the exit-code
table, durations, subprocesses (proc), git, atomic writes (fsutil), names and quoting, crash logs.
"""
