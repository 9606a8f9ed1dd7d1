"""Where a run is asked for: a save (watcher), a commit (hook, hooks_install, commits), the tag in
a notebook (tags) and parameters given with it (params).
"""
