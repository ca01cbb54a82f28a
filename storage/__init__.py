"""Durable state: objects in MinIO (storage.objects) and records in SQL (storage.records)."""
