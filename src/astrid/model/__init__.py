"""The real/bogus detection model: a compact U-Net scorer with training, registry and service.

Modules, in the order data flows:

``stamps``       stamp normalisation and pad/crop (the input convention)
``ztf``          ZTF alert packets: reading, CCD-edge padding, NaN policy, the triplet
``unet``         the network and how a candidate's score is read at its position
``examples``     LabelledStamps: the training-set container (label source, weight, night)
``splits``       grouped splits (field, object, night)
``differencers`` differencing functions for the simulator driver
``simulated``    simulated pairs -> differencing -> labelled cutouts
``real_alerts``  real alert packets -> labelled examples (curated, asteroid, drb/rb weak labels)
``validated``    curated (human-validated) detections -> labelled examples
``dataset_files`` / ``dataset_store``  persistence: folders with manifests; object store + DB
``torch_data``   the torch Dataset with per-batch augmentation
``transfer``     the recipe: simulations + real alerts, whole nights held out
``train``        seeded training with MLflow tracking, codecarbon energy and Optuna search
``epoch_selection``  which epoch ``fit`` keeps (validation AUC or FPR at FNR 2 %), weight averaging
``calibration``  temperature / isotonic calibration of the score
``evaluate``     ROC/PR, FPR at fixed FNR, latency and throughput
``registry``     model packages on disk and the MLflow registry (semver, aliases)
``score``        the inference service (load by alias or package; batched; uncertainty)
``alert_streaks`` satellite streaks among a batch of ZTF alerts (demoted scores)
``shadow``       shadow A/B: a challenger beside the champion, agreement
``drift``        population stability index of scores and input statistics

Import the submodules directly (``from astrid.model.score import load_scorer``); this
package imports nothing heavy itself.
"""

__all__: list[str] = []
