"""What a run leaves: its record (records), the result folders and the history index (store),
metrics, and two runs compared (compare).
"""
