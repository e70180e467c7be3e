SELECT pg_advisory_unlock(%s, hashtext(%s))
