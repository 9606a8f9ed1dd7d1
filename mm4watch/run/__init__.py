"""One run from request to record (pipeline), what it is built from (buildctx), what it is doing
(progress), and the far side: the runner, what a run is told (runenv) and the helpers a notebook
imports (these keep to Python 3.9 and the standard library).
"""
