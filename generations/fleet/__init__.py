"""The GPU fleet: the Worker table kept from heartbeats, the autoscaling target and the providers
that follow it (the local one here), what the GPUs cost, the capacity planner, and the operators'
API and metrics."""
