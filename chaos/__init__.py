"""Strand fault harness (simulator, toxiproxy, workloads, checkers). Built in issue 3."""
