"""Runs: what a run is (:mod:`.spec`), where it is filed (:mod:`.store`), what it costs
(:mod:`.cost`), where it is made (:mod:`.jobs`) and making it (:mod:`.execute`); each module
imports only from the ones before it. Nothing is imported here, so that loading one of them
loads no more than it needs."""
