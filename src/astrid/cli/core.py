"""Foundation commands: init, db, ingest, observations, demo."""
