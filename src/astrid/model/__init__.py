"""The real/bogus detection model: a compact U-Net scorer with training, registry and service.

Modules, in the order data flows:

``stamps``       stamp normalisation and pad/crop (the input convention)
``ztf``          ZTF alert packets: reading, CCD-edge padding, NaN policy, the triplet
``unet``         the network and how a candidate's score is read at its position
``dataset``      simulated pairs -> differencing -> labelled cutouts; grouped splits; versions
``train``        seeded training with MLflow tracking, codecarbon energy and Optuna search
``calibration``  temperature / isotonic calibration of the score
``evaluate``     ROC/PR, FPR at fixed FNR, latency and throughput
``registry``     model packages on disk and the MLflow registry (semver, aliases)
``score``        the inference service (load by alias or package; batched; validation)

Import the submodules directly (``from astrid.model.score import load_scorer``); this
package imports nothing heavy itself.
"""

__all__: list[str] = []
