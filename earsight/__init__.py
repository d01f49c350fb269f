"""EarSight's core: what the app, the engine and the trainer all share, with one home each.

``earsight.errors`` (the root error class, the usage error, one line of a foreign exception),
``earsight.paths`` (the user's folders and their environment variables), ``earsight.wav`` (the
WAV writer), ``earsight.console`` (ASCII stand-ins for a terminal without Unicode). It imports nothing of app/, engine/ or trainer/, and no heavy library.
"""
