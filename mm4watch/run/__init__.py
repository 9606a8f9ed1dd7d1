"""One run from request to record (pipeline) and what it is doing (progress); and the far side,
which runs on whichever machine runs the notebook: the runner and the helpers a notebook imports
(these keep to Python 3.9 and the standard library).
"""
