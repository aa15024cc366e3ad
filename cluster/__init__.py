"""Strand cluster layer (Ray actors, TCP transport, client handle). Built in issue 3."""
