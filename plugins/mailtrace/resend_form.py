"""What the resend trigger form offers, in a module light enough for the DAG file to import at parse time.

`mailtrace.resend` checks the parameters against the same values, so the form and the checks cannot
drift apart. The ID types offered are the built-in ones; the `id_type` field takes free text as well,
so a type added through Variable `mailtrace_resend_id_patterns` can be entered (and is checked when the
run starts).
"""

from mailtrace.id_list import DEFAULT_ID_PATTERNS

NOTIFICATION_TYPES = {"error_resolved": "ERROR_RESOLVED", "submission_error": "SUBMISSION_ERROR"}
LANGUAGES = ("en", "fr")
BUILT_IN_ID_TYPES = tuple(DEFAULT_ID_PATTERNS)
# Anchored at both ends without `$` (which also matches before a final newline, so "INC-1\n" passed) and
# without \A/\Z (the trigger form's JavaScript regexes lack them): the lookahead means "nothing follows".
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?![\s\S])"
# An id_type is a word: it names a subject_type in mailtrace.contact and a key of the patterns Variable.
ID_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,62}(?![\s\S])"
# GC Notify allows 1,000 requests a minute per API key; stay under it by default.
DEFAULT_RATE_PER_MINUTE = 900
DEFAULT_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 1000
DEFAULT_MAX_RECIPIENTS = 500
