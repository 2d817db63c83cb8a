"""The names the server, the command line and the pages share, each list written once: display stretches,
intervals and colormaps. Nothing heavy is imported here, so every command (and the site's policy) can use
them without numpy or libvips; the image page's controls and its script get them through the template."""

from __future__ import annotations

AUTO = "auto"  # "let the image decide" (linear, min-max for 8-bit pictures; or the site's default stretch)
# the stretches a display may use, with the labels the pages show
STRETCH_LABELS = {"linear": "linear", "sqrt": "square root", "log": "log", "asinh": "asinh",
                  "histeq": "histogram equalisation", "ahisteq": "adaptive histogram equalisation"}
STRETCHES = tuple(STRETCH_LABELS)
EQUALISED = ("histeq", "ahisteq")  # stretches that need the image's equalisation curve
# the intervals a display may use, with their labels; MEASURED are those taken from the pixels themselves
INTERVAL_LABELS = {"zscale": "zscale", "minmax": "min\u2013max", "percentile": "percentile",
                   "manual": "manual"}
MEASURED_INTERVALS = ("zscale", "percentile", "minmax")
COLORMAPS = ("grey", "viridis", "magma", "inferno", "heat", "cool", "rainbow")
