"""How things are shown, as data first: formatted values, rows and commits (format), the status
snapshot (status), the report page (report), and what may reach a terminal (terminal).
"""
