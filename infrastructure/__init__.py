"""Adapters: event store configuration, read-model stores, transcoding."""
