"""The feeds beside delivery: ``analytics`` (the Avro topic), ``export`` (hourly Avro files) and
``replay`` (past events to one partner again; ``replay_jobs`` runs them for the admin API).
"""
