"""Clients of the other services: the wire protocol, the loopback HTTP clients and the SageMaker Runtime client."""
