INSERT INTO mailtrace.send_pacer AS pacer (name, next_slot)
VALUES (%(name)s, clock_timestamp() + make_interval(secs => %(interval)s))
ON CONFLICT (name) DO UPDATE SET next_slot =
    greatest(pacer.next_slot, clock_timestamp()) + make_interval(secs => %(interval)s)
RETURNING extract(epoch FROM pacer.next_slot - clock_timestamp())::float8
          - %(interval)s
