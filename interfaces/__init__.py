"""The CLI and the composition root. Imports everything; nothing imports it."""
