"""The one rule for a CSV cell a person opens in a spreadsheet: shown as text, never run as a formula."""

# A spreadsheet treats a cell starting with one of these as a formula or splits it (OWASP "CSV
# injection"); leading spaces do not make it safe, since some spreadsheets trim them.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise_cell(value: object) -> str:
    """`value` as text, with a leading `'` when a spreadsheet would run it as a formula.

    The apostrophe is the form Excel and LibreOffice show as literal text; the rest of the value is
    kept exactly, so the file still says what the warehouse holds.
    """
    text = "" if value is None else str(value)
    if text.lstrip(" ").startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text
