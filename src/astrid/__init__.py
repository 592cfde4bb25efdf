"""AstrID: find new and changing objects in survey images.

Beside the layers: ``settings`` (the one ``ASTRID_*`` settings object), ``errors`` (the
base exception) and ``logs`` (text or JSON log lines with request and run ids).

The package is layered (each layer imports only from those below it):

``science``  pure functions over numpy/astropy (FITS, calibration, alignment, differencing)
``store``    database, migrations, content-addressed blobs, sky index
``domain``   observations, status machine, domain events, services
``pipeline`` ingest sources and pipeline stages
``cli`` / ``api``  thin faces over the layers above
"""

__version__ = "0.1.0"
