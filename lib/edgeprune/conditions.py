"""The distribution-shift conditions and their parameters per severity 1..5.

Apart from :mod:`edgeprune.data`, which applies them, so that the params schema and the results
table can name them without importing torch. Noise, blur and contrast follow CIFAR-10-C's
(Hendrycks & Dietterich 2019) levels; low light scales brightness.
"""

from __future__ import annotations

CONDITIONS: dict[str, tuple[float, ...]] = {
    "clean": (0.0,) * 5,
    "noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # gaussian sigma on [0, 1] pixels
    "blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # gaussian blur sigma in pixels
    "low_light": (0.7, 0.55, 0.4, 0.3, 0.2),  # brightness factor
    "low_contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # contrast factor
}
