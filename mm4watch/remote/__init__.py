"""Reaching other machines: ssh (the system client), a Docker engine (docker_engine: the one module
that imports docker-py) and what crosses the link to build there (buildctx), the Mini's copy of
earlier results (mirror), keeping a Mac awake (awake).
"""
