"""The domain: aggregates, value objects, events and pure rules. Imports no other layer."""
