"""The instructor's side: the workshop record, rounds and their lifecycle, the brief's images, the
live room, announcements, the spotlight and the projector, and the exports."""
