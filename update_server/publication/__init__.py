"""Publication: verified releases in, a consistent TUF repository out (R13, R49, R58).

``repository`` reads the published state and writes the online roles;
``release`` checks uploaded roles against it; ``upload`` streams firmware
to staging while hashing it; ``publish`` switches the repository atomically
(``timestamp.json`` last); ``renewal`` keeps snapshot and timestamp fresh;
``sweep`` expires abandoned uploads and removes their staging; ``status``
sums up the published roles for people; ``bootstrap`` imports the first
repository made with ``fwsign``. ``views`` is the HTTP side of all of it.
"""
