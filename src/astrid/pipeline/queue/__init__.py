"""Queued work on Dramatiq: broker (:mod:`.broker`), actors (:mod:`.actors`), queued batches
(:mod:`.batch`), the worker loop (:mod:`.worker`) and worker heartbeats and queue pauses
(:mod:`.presence`)."""
