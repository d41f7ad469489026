"""The fleet side: what ``linetap fleet`` knows about every box on a broker.

``state.py`` is pure (messages in, box records, the contract's JSON, the table and the exit code
out); ``watch.py`` is the broker subscription that feeds it.
"""
