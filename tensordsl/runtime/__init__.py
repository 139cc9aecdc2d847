"""Calling compiled kernels: argument checking and symbolic-size binding."""
