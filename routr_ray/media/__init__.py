"""Media relay: the RTPEngine middleware (issue 19, docs/media.md).

``bencode`` and ``ng`` speak RTPEngine's ng control protocol; ``pool`` holds several instances (health, per-call
affinity, failover); ``sdp`` and ``flags`` decide the ng parameters per direction; ``middleware`` is the
processor-SDK middleware the dispatcher runs (``serve://rtpengine``); ``metrics`` its Prometheus series.
No Ray here (DESIGN §2).
"""
