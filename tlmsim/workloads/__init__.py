"""Workloads: HF models to compressed layer graphs and job sequences (no SimPy here)."""
