"""Evaluation of answers and retrieval (`make eval`, `make eval-report`): tools, never loaded by the containers."""
