"""The far side: what runs on whichever machine runs the notebook (the Mini, a container, this
machine for a local run): the runner, the helpers a notebook imports, and the steps a Mini takes
for mm4watch. Shipped there (``executors.far_side.FAR_SIDE``): Python 3.9 and the standard library.
"""
