"""Integer arithmetic on index expressions: canonical affine forms, constant bounds,
symbolic intervals. Plain rewrite rules, fast enough to run on every node while
lowering (sympy is too slow for that, see DEPENDENCIES.md)."""
