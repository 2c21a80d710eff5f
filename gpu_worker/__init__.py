"""The GPU worker: an RQ job function, its backends, the event emitter and the uploader.

Plain Python that never imports Django; it talks to the web app only through Redis
and HTTP, as ``gpu_worker.protocol`` describes.
"""
