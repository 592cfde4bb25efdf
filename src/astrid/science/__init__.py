"""The science core: pure functions over numpy arrays and astropy objects.

Nothing here touches a database, object storage, settings or the network (except the
explicitly online catalog providers), so every module can be used from a notebook alone.

Modules, by stage:

* Reading: ``fitsio`` (reading, validating, writing FITS images), ``fitslayout`` (a
  mosaic's CCDs, HST chips, their planes),
  ``fitswcs`` (celestial WCS, DSS plates), ``fitsmeta`` (normalised header metadata),
  ``fitsscan`` (bounded byte-level reading), ``fitserrors`` (named reading errors),
  ``dqmask`` (excluded pixels from a data-quality plane, by mission).
* Preparing: ``master_frames`` (bias, dark and flat masters), ``calibrate`` (applying
  them), ``preprocess`` (raw frame to ready image), ``background`` (background and noise
  maps, the input check), ``cosmics`` (L.A.Cosmic mask), ``stars`` (source detection, PSF
  FWHM and ellipticity), ``quality`` (the quality record: saturation, depth, score),
  ``reference`` (choosing a reference), ``resample`` (reprojection onto a target WCS grid),
  ``starmatch`` (star matching, similarity fit), ``align`` (reproject + star-based
  refinement), ``coadd`` (weighted mean on one grid), ``catalogs`` (reference star
  catalogues).
* PSFs: ``psf`` (the PSF record, Gaussian, centring), ``psf_stars`` (the stars a PSF is
  built from), ``psf_estimate`` (empirical PSFs from the image), ``psf_model`` (Moffat, ePSF
  models), ``psf_spatial`` (one PSF per grid cell), ``stats`` (robust noise constants),
  ``sepextract`` (SEP extraction with a pixel stack sized on demand).
* Geometry: ``neighbours`` (nearest neighbours and close pairs of points, without
  scipy.spatial), ``morphology`` (fast binary dilations of masks).
* Differencing: ``difference`` (the one entry point), ``pair_alignment`` (the new image onto
  the reference grid: filter and overlap checks, residual shift), ``diffimage`` (prepared
  inputs and the result type), ``prepared_reference`` (a reference loaded and prepared once
  for many new images; the image-input helpers), ``flux_ratio`` (F_n / F_r and
  registration noise), ``zogy`` (ZOGY over sub-images), ``zogy_algebra`` (the ZOGY
  equations on one array pair), ``zogy_masks`` (mask growth, PSF-error term),
  ``alard_lupton`` (classic PSF-matched subtraction).
* After differencing: ``extract`` (candidates, features, score), ``pointsource`` (point
  source or broader light on D), ``vetting`` (cosmic rays, star residuals: the tests),
  ``candidate_vetting`` (those tests applied to a pair's candidate table), ``streaks``
  (satellite trails: collinear candidates of one image, trails across a stamp), ``forced``
  (forced photometry), ``limits`` (detection limits), ``cutouts`` (stamps).
* Simulation: ``simulate_model`` (PSF model, exposure, result types, WCS),
  ``simulate_image`` (drawing one exposure, writing FITS), ``simulate`` (pairs with injected
  transients and their truth, ideal S/N), ``simulate_effects`` (galaxies, bleeding,
  satellite trails), ``simfamily`` (the family of simulated cases).
"""
