"""The worker process: the supervisor that runs the stages (``worker.py``)."""
