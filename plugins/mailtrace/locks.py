"""Every Postgres advisory-lock key mailtrace takes, in one place so no two jobs share one by accident.

All keys sit in the 7_301_xxx range. Single-key locks serialise one job; the two "class" keys are the
first half of a two-key lock whose second half names the thing locked.
"""

# Migrations: one `apply_migrations` at a time (transaction lock).
MIGRATION_LOCK = 7_301_001
# Loads into provider_event and reconcile (transaction lock): identity values then commit in order,
# which lets reconcile use "id > cursor" without missing a late commit.
LOAD_LOCK = 7_301_002
# The flag rebuild (transaction lock).
FLAGS_LOCK = 7_301_003
# Report manifest upserts, so two builds never compute overlapping "newly flagged" windows.
MANIFEST_LOCK = 7_301_004
# The Notify extract: one run at a time (session lock, held across its transactions).
EXTRACT_LOCK_BASE = 7_301_100
# Class of "this resend reference is being sent right now" (second key: hashtext of the reference).
SEND_LOCK_CLASS = 7_301_200
