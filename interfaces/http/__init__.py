"""The REST API under /_/scheduler."""
