"""The resend trigger form (DAG mailtrace_resend), in a module light enough for the DAG file to import at
parse time.

`mailtrace.resend` checks the parameters against the same values, so the form and the checks cannot
drift apart. The ID types offered are the built-in ones; the `id_type` field takes free text as well,
so a type added through Variable `mailtrace_resend_id_patterns` can be entered (and is checked when the
run starts).

Airflow checks the form against each field's JSON schema when the run is triggered and shows the schema
library's message, so every field says in words what it takes, with examples, and the rules are written
so that the message reads well ("5000 is greater than the maximum of 1000"). Rules sit inside `allOf`, so
a refusal quotes the rule alone instead of the whole field. For numbers it matters more: Airflow's number
field takes a top-level `minimum`/`maximum` as the input's limits and silently moves an out-of-range value
to the nearest limit (0 became 1, 5000 became 1000) when the field loses focus; inside `allOf` they are
checked on trigger and the value is refused instead.
"""

from airflow.sdk import Param

from mailtrace.id_list import DEFAULT_ID_PATTERNS, ID_TYPE_DESCRIPTIONS

NOTIFICATION_TYPES = {"error_resolved": "ERROR_RESOLVED", "submission_error": "SUBMISSION_ERROR"}
# The messages as the people receiving them would name them (templates/resend/<template>.*.j2).
TEMPLATE_NAMES = {
    "error_resolved": "Problem fixed: please submit again",
    "submission_error": "Your submission did not reach us",
}
TEMPLATE_MEANINGS = {
    "error_resolved": "a problem on our side stopped them from submitting; it is fixed and they can submit "
    "again",
    "submission_error": "a problem on our side stopped their submission from being received; we will write "
    "again once it is fixed",
}
LANGUAGES = ("en", "fr")
LANGUAGE_NAMES = {"en": "English", "fr": "Français"}
BUILT_IN_ID_TYPES = tuple(DEFAULT_ID_PATTERNS)
# Anchored at both ends without `$` (which also matches before a final newline, so "INC-1\n" passed) and
# without \A/\Z (the trigger form's JavaScript regexes lack them): the lookahead means "nothing follows".
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?![\s\S])"
# An id_type is a word: it names a subject_type in mailtrace.contact and a key of the patterns Variable.
ID_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,62}(?![\s\S])"
S3_URI_PATTERN = r"^s3://[^/\s]+/[^\r\n]+(?![\s\S])"
# GC Notify allows 1,000 requests a minute per API key; stay under it by default.
DEFAULT_RATE_PER_MINUTE = 900
DEFAULT_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 1000
DEFAULT_MAX_RECIPIENTS = 500
# (least, most or None) of each number field; the form and ResendParams.check both use these.
NUMBER_BOUNDS = {
    "max_recipients": (1, None),
    "rate_per_minute": (1, None),
    "chunk_size": (1, MAX_CHUNK_SIZE),
}
LIMITS_SECTION = "Limits"


def text_rule(pattern: str) -> dict:
    """A text field's pattern, inside `allOf` too: a refusal then quotes only the pattern, not the whole
    field (title and description) as the schema library does for a top-level keyword."""
    return {"allOf": [{"pattern": pattern}]}


def number_bounds(name: str) -> dict:
    """The field's bounds as the form checks them on trigger, refusing what is out of range (see above)."""
    least, most = NUMBER_BOUNDS[name]
    return {"allOf": [{"minimum": least, **({"maximum": most} if most is not None else {})}]}


def bounds_in_words(name: str) -> str:
    least, most = NUMBER_BOUNDS[name]
    return f"a whole number from {least:,} to {most:,}" if most else f"a whole number, at least {least:,}"


def _id_type_lines() -> str:
    return "\n".join(
        f"* `{name}`: {words}, e.g. " + ", ".join(f"`{example}`" for example in examples)
        for name, (words, examples) in ID_TYPE_DESCRIPTIONS.items()
    )


def trigger_form() -> dict[str, Param]:
    """The DAG's params: every field with a title, what it takes in words, examples and allowed characters."""
    return {
        "incident_id": Param(
            type="string",
            **text_rule(INCIDENT_ID_PATTERN),
            title="Incident ID",
            description_md=(
                "The incident this resend is about, e.g. `INC-2026-014` or `2026-11-outage`. Letters, "
                "digits, `.`, `_` and `-` (no spaces), starting with a letter or digit, at most 64 "
                "characters. Each person on the list gets one email per incident however often you trigger: "
                "keep the same ID to retry, use a new one for a new incident."
            ),
        ),
        "ids_s3_uri": Param(
            None,
            type=["null", "string"],
            **text_rule(S3_URI_PATTERN),
            title="ID list in S3",
            description_md=(
                "**Give exactly one of this and *IDs typed in*.** The `s3://` address of the uploaded list, "
                "e.g. `s3://<report bucket>/resend-requests/INC-2026-014/ids.csv`: `s3://`, the bucket, `/`, "
                "the file's key (spaces are fine), with no line breaks. Lists are read only under "
                "`resend-requests/` in the report bucket (Variable `mailtrace_resend_ids_prefix`). The "
                "file: CSV in UTF-8, one ID per line (a header line such as `registration_number` is fine), "
                "at most 5 MB and 100,000 rows."
            ),
        ),
        "inline_ids": Param(
            None,
            type=["null", "string"],
            title="IDs typed in",
            description_md=(
                "**Give exactly one of this and *ID list in S3*.** For a short list: the IDs separated by "
                "commas, spaces or new lines, e.g. `STR-004211, STR-004212`. Each must have the shape of "
                "the ID type below; one that does not is rejected (and listed in the outcome CSV), the "
                "others go on."
            ),
        ),
        "id_type": Param(
            BUILT_IN_ID_TYPES[0],
            type="string",
            # Suggestions, not a closed list: a type added through Variable mailtrace_resend_id_patterns
            # is typed in, and checked against the patterns when the run starts.
            examples=list(BUILT_IN_ID_TYPES),
            **text_rule(ID_TYPE_PATTERN),
            title="ID type",
            description_md=(
                "What kind of ID the list holds:\n\n"
                + _id_type_lines()
                + "\n\nAnother type your administrators added (Variable `mailtrace_resend_id_patterns`) can "
                "be typed in: lower-case letters, digits and `_`, starting with a letter."
            ),
        ),
        "template": Param(
            "error_resolved",
            type="string",
            enum=list(NOTIFICATION_TYPES),
            values_display=TEMPLATE_NAMES,
            title="Message to send",
            description_md=(
                "Which message the people on the list receive, in the language below:\n\n"
                + "\n".join(
                    f"* **{TEMPLATE_NAMES[name]}** (`{name}`): {TEMPLATE_MEANINGS[name]}."
                    for name in NOTIFICATION_TYPES
                )
            ),
        ),
        "language": Param(
            LANGUAGES[0],
            type="string",
            enum=list(LANGUAGES),
            values_display=LANGUAGE_NAMES,
            title="Language",
            description_md="The language of the message.",
        ),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description_md=(
                "On (the default): nothing is sent; the outcome CSV "
                "(`s3://<report bucket>/resend-outcomes/<incident ID>/<run>.csv`, and the Delivery page's "
                "Resends section) says what would happen to every ID. Off: the emails are sent."
            ),
        ),
        "force_resend": Param(
            False,
            type="boolean",
            title="Force resend",
            description_md=(
                "Off (the default): people already emailed for this incident are skipped. On: those on the "
                "list who already got the email get it a second time (a deliberate repeat)."
            ),
        ),
        "max_recipients": Param(
            DEFAULT_MAX_RECIPIENTS,
            type="integer",
            **number_bounds("max_recipients"),
            title="Max recipients",
            section=LIMITS_SECTION,
            description_md=(
                "Safety limit: if more people than this would receive the email, the run stops and sends "
                f"nothing. {bounds_in_words('max_recipients').capitalize()}; default "
                f"{DEFAULT_MAX_RECIPIENTS:,}."
            ),
        ),
        "rate_per_minute": Param(
            DEFAULT_RATE_PER_MINUTE,
            type="integer",
            **number_bounds("rate_per_minute"),
            title="Emails per minute",
            section=LIMITS_SECTION,
            description_md=(
                "Sending rate of all chunks and runs together; keep it under the provider's limit (GC "
                "Notify: 1,000 a minute per API key). "
                f"{bounds_in_words('rate_per_minute').capitalize()}; default {DEFAULT_RATE_PER_MINUTE:,}."
            ),
        ),
        "chunk_size": Param(
            DEFAULT_CHUNK_SIZE,
            type="integer",
            **number_bounds("chunk_size"),
            title="Chunk size",
            section=LIMITS_SECTION,
            description_md=(
                "Emails per send task (the list is sent in chunks of this size). "
                f"{bounds_in_words('chunk_size').capitalize()}; default {DEFAULT_CHUNK_SIZE:,}."
            ),
        ),
    }
