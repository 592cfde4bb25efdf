"""Products kept in process (put_fits keep=True) read back exactly as from storage."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from astropy.io import fits

from astrid.pipeline.stages.products import (
    clear_recent_products,
    put_fits,
    read_array,
    recent_image,
)
from astrid.runtime import Runtime
from astrid.science.fitsio import read_image
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated


def test_kept_products_read_as_the_stored_blob(
    migrated_url: str, make_runtime: Callable[..., Runtime]
) -> None:
    clear_recent_products()
    kept = make_runtime(migrated_url)
    stored = make_runtime(migrated_url, pipeline_recent_products_mb=0)  # same blob folder
    sim = read_image(write_simulated(simulate_pair((96, 96), 20, seed=2).new, extensions=False))
    tag = {"ASTRIDST": ("preprocess", "AstrID stage")}
    image = sim.data * np.float32(1.5)
    mask = (sim.data > np.median(sim.data)).astype(np.uint8)
    image_key = put_fits(kept, image, sim.header, tag, keep=True)
    mask_key = put_fits(kept, mask, sim.header, tag, keep=True)
    for key in (image_key, mask_key):
        a, ha = read_array(kept, key)
        b, hb = read_array(stored, key)
        assert a.flags.writeable and a.dtype == b.dtype.newbyteorder("=")
        np.testing.assert_array_equal(a, b)
        assert ha.tostring() == hb.tostring()
    # as read_image reads the blob: the same pixels, header and WCS
    fresh = read_image(stored.blobs.get(image_key))
    again = recent_image(kept, image_key)
    assert again is not None and recent_image(stored, image_key) is None
    np.testing.assert_array_equal(again.data, fresh.data)
    assert again.data.dtype == fresh.data.dtype and again.hdu_name == fresh.hdu_name
    assert again.header.tostring() == fresh.header.tostring()
    assert again.wcs.to_header_string() == fresh.wcs.to_header_string()
    # only float32 images come back as images; the kept array cannot be changed
    assert recent_image(kept, mask_key) is None
    assert isinstance(read_array(kept, image_key)[1], fits.Header)
    clear_recent_products()
    assert recent_image(kept, image_key) is None
