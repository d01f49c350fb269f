"""EarSight application: the ``earsight`` command line (app.cli) and its modes: ``live`` (camera
loop: capture → infer → speak on a key press), ``describe`` (image files → WAVs), ``teach``,
``doctor``, ``bench``; keys, audio out, spoken status and earcons. docs/ARCHITECTURE.md."""
