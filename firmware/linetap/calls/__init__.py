"""Calls: cutting each line's audio into recordings (VOX, off-hook, continuous)."""
