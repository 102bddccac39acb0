"""The suite's own machinery, beside the pytest plugin that uses it: the regression matrix's
constants, the network guard, the xdist scheduling of files that share fixtures, and the numba
cache per worker. The library itself (``core`` and the wings above it) needs none of it, except
the release series, which counts an import's network attempts with the guard."""
