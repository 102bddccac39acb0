"""The suite's own machinery, beside the pytest plugin that uses it: the regression matrix's
constants, the network guard, the xdist scheduling of files that share fixtures, and the numba
cache per worker. The library itself needs none of it, with two exceptions: the release series
counts an import's network attempts with the guard, and the weight downloads let the guard's
error pass through unchanged."""
