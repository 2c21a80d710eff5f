"""Live pages: every channel-layer group name and every send, in one place (`groups`).

Messages carry ids only: consumers re-read the database and render full fragments, so a dropped
message is healed by the next one or by a reconnect.
"""
