"""The curated catalog: entries of confirmed objects, immutable releases, search, analytics,
cross-match annotations and streamed exports (CSV, VOTable, FITS, JSON)."""
