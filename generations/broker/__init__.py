"""The web side's handle on Redis, below everything that uses it: the connection, RQ's queues and
jobs, the messages to the conductor (wake up) and to workers (cancel), preview frames, and the
workers' heartbeats as they wrote them."""
