"""Queued work on Dramatiq: broker (:mod:`.broker`), actors (:mod:`.actors`), queued batches
(:mod:`.batch`) and the worker loop (:mod:`.worker`)."""
