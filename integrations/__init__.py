"""Adapters for the clients users already have (LangChain, ...), talking to a deployed endpoint. The
service itself never imports them."""
