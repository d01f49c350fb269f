"""EarSight application: the ``earsight`` command line (app.cli) and, later, the camera loop."""
