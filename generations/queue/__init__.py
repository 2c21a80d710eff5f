"""The queue of record: submitting, cancelling and retrying generations, quotas, who may see what
(the access rules), the job cards' positions and ETAs, and the burst window's Django side."""
