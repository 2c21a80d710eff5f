"""Files out of the app: ZIPs made while they stream, CSV with formula escaping, responses that
honour HTTP Range, and the one adapter that streams under ASGI without reading everything first."""
