"""Experiments that train models to measure something (as opposed to analyses of stored runs)."""
