"""Use cases: commands, queries, projections and ports. Imports the domain only."""
