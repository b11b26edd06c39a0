"""Several gunicorn workers and two server instances on one PostgreSQL, behaving as one."""
