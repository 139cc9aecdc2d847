"""Side-by-side benchmarks: tensordsl kernels beside the library a user would call."""
