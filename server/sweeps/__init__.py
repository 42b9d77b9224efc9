"""Many offline simulations: sweeps over spec fields and capacity search, on a process pool or Ray.

``plan`` reads a sweep file into runs, ``runner`` executes them (resumable, one row per
run), ``capacity`` finds the highest arrival rate meeting SLOs, ``backends`` maps a
function over tasks locally or on Ray, ``plots`` draws the figures against swept fields.
"""
