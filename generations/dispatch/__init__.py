"""Between the database and the GPU fleet: the conductor (dispatch, events, reconcile), the
attempts' state changes, and the takes workers upload (storage and the media probe)."""
