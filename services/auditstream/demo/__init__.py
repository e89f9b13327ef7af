"""Demo data: realistic audit events (:mod:`.generator`) and malformed messages (:mod:`.malformed`)."""
