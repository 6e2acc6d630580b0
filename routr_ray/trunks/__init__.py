"""SIP trunks as providers expect them (issue 15): outbound registration (SIP Connect 1.1 registration mode,
RFC 6140 GIN). ``registration`` is the sans-I/O client of one trunk's registration, ``registrar`` runs them on
asyncio with any ``send`` (the EdgePort's, through ``routr_ray/actors/trunk_registrar.py``), ``specs`` turns
Connect resources into what to register. No Ray here (DESIGN §2)."""
