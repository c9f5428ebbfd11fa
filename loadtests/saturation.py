"""Add-on locustfile: the saturation finder's step-load shape.

`locust -f loadtests/locustfile.py,loadtests/saturation.py --headless --host URL`, or
`diabetes loadtest --find-saturation`. Knobs: `DIABETES_SATURATION_*` (see diabetes_loadtest.saturation).
"""

from diabetes_loadtest.saturation import SaturationShape

__all__ = ["SaturationShape"]
