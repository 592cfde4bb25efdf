"""Domain rules shared by the CLI, the API and the workers.

``status``        the observation processing-status machine
``events``        domain events, the transactional outbox and its dispatcher
``observations``  coordinate validation, airmass, repository queries and the service layer
``objects``       association of detections into sky objects; light curves (forced photometry)
``merges``        merging objects that a detection shows to be one; retired ids as aliases
``taxonomy``      the versioned classification tree
``votes``         votes, the consensus rule, undo, bulk votes, the scanning state
``comments``      comments on detections and objects, @mentions
``review``        expert reviews (confirm/dispute, importance 1-5) and discoveries
``curation_audit`` the audit trail of every vote, undo and state change
``curation_demo`` the demo's curator and expert users and their first votes
``retrain``       the closed loop: curated votes → dataset → challenger → promoted if better
``model_scores``  scores per model version: re-scoring, shadow A/B and its summary
``model_drift``   the drift job: per-night PSI against the champion's training reference
``calibration``   master bias/dark/flat frames: registering, listing, matching to images
``calibration_files`` reading and checking one master file (its chips, planes, units)
"""
