"""The Falcon WSGI app: Crafter Profile's attachment API over attachd's pipeline."""
