"""HTTP adapters shared by every service: Flask app factory, errors as JSON, request logs, loaders."""
