"""The data path: ingest sources and pipeline stages (in the order data flows).

``ingest``  local FITS files and directories → blobs + observations
"""
