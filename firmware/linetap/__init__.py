"""linetap: call-recorder appliance firmware that never fails silently."""

__version__ = "0.1.0"
