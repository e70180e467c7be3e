"""Rendering the resend emails from `templates/resend/` (subject, text and HTML parts)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mailtrace.paths import TEMPLATES_DIR
from mailtrace.resend.constants import _SUBJECT_FORBIDDEN, ID_LABELS, LANGUAGES, NOTIFICATION_TYPES


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@functools.cache
def _jinja_environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "resend"),
        # HTML parts are escaped; subject and text parts are plain text and must stay unescaped.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True, default=False),
        undefined=StrictUndefined,
    )


def render_email(template: str, language: str, *, subject_type: str, subject_id: str) -> RenderedEmail:
    """Subject, text and HTML of one email from `templates/resend/<template>.<language>.*.j2`."""
    if template not in NOTIFICATION_TYPES or language not in LANGUAGES:
        raise ValueError(f"no resend template {template!r} in language {language!r}")
    environment = _jinja_environment()
    context = {
        "subject_id": subject_id,
        "id_label": ID_LABELS[language].get(subject_type, subject_type.replace("_", " ")),
    }
    subject = environment.get_template(f"{template}.{language}.subject.txt.j2").render(context).strip()
    if _SUBJECT_FORBIDDEN.search(subject):
        raise ValueError("the rendered subject must be a single line")
    return RenderedEmail(
        subject=subject,
        text=environment.get_template(f"{template}.{language}.txt.j2").render(context),
        html=environment.get_template(f"{template}.{language}.html.j2").render(context),
    )
