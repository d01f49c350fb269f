"""The shipped files: models with their sidecars and cards (``models/``), sample images
(``samples/``) and the systemd unit. Read through ``importlib.resources.files("earsight.assets")``
so the checkout and an installed wheel find them alike."""
