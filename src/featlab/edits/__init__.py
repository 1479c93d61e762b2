"""Learned feature-space edits, magnified and cut to their leading directions.

A fitted mapping f of a (backbone, layer, manipulation) cell moves original features x to
manipulated ones; its edit is E(x) = f(x) - x. `operators` extrapolates the edit, x + alpha E(x),
cuts it to its leading k output directions, and draws the norm-matched random control;
`readings` runs the rest of the backbone on the results and inverts them with FeatInv.
"""
