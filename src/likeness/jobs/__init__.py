"""Jobs: the one road (:mod:`likeness.jobs.road`) every job walks, and what the CLI and the app call.

Start reading at :func:`likeness.jobs.road.run_job`.
"""
