"""One run from request to record (pipeline) and what it is doing (progress)."""
