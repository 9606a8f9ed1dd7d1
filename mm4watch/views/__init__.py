"""How things are shown, as data first: formatted values, rows and commits (format), the status
snapshot (status), the report page (report). Commands and the page use these; no command imports
another.
"""
