"""Code generators and device runtimes, one subpackage per backend (see base.py)."""
