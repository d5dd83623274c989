"""``mailpulse simulate``: realistic, signed ESP traffic to a receiver, with its ground truth.

:mod:`~mailpulse.simulate.scenario` decides what happens to the mail (from a seed),
:mod:`~mailpulse.simulate.schedule` how the ESP batches, repeats and reorders its requests,
:mod:`~mailpulse.simulate.sender` sends them as ESPs do, and :mod:`~mailpulse.simulate.truth`
records every unique event the receiver accepted.
"""

from mailpulse.simulate.run import Options, Result, simulate

__all__ = ["Options", "Result", "simulate"]
