"""The science core: pure functions over numpy arrays and astropy objects.

Nothing here touches a database, object storage, settings or the network (except the
explicitly online catalog providers), so every module can be used from a notebook alone.
"""
