"""Email goes out through smtp_default as text + HTML with attachments; headers cannot be injected."""

import pytest

from mailtrace.mailer import Attachment, RecipientsRefused, build_message, send_email
from mailtrace.privacy import mask_email


def test_send_email_delivers_text_html_and_attachment(smtp_server):
    send_email(
        to=["examiner@example.gov"],
        subject="Weekly report",
        text="plain body",
        html="<p>html body</p>",
        attachments=(Attachment("r.csv", b"a,b\n1,2\n"),),
    )
    (message,) = smtp_server.messages
    assert message["Subject"] == "Weekly report"
    assert message["From"] == "mailtrace@example.gov"
    assert smtp_server.envelopes[0][1] == ["examiner@example.gov"]
    assert message.get_body(("plain",)).get_content().strip() == "plain body"
    assert message.get_body(("html",)).get_content().strip() == "<p>html body</p>"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "r.csv"
    assert attachment.get_payload(decode=True) == b"a,b\n1,2\n"


def test_a_partly_refused_message_names_the_refused_recipient_whatever_form_it_had(smtp_server):
    smtp_server.refused = {"gone@example.gov"}
    with pytest.raises(RecipientsRefused, match="550") as refused:
        send_email(to=["Gone Person <gone@example.gov>", "here@example.gov"], subject="s", text="t")
    assert refused.value.accepted == ["here@example.gov"]
    assert smtp_server.envelopes[0][1] == ["here@example.gov"]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("subject", {"subject": "hi\r\nBcc: evil@example.com", "to": ["a@example.gov"]}),
        ("recipient", {"subject": "hi", "to": ["a@example.gov\nBcc: evil@example.com"]}),
    ],
)
def test_newline_in_header_is_refused(field, kwargs):
    with pytest.raises(ValueError, match=field):
        build_message(sender="m@example.gov", text="x", **kwargs)


@pytest.mark.parametrize(
    ("address", "masked"),
    [("alice.smith@example.gov", "a***@example.gov"), ("nobody", "***"), ("", "***"), ("@x.org", "***")],
)
def test_mask_email(address, masked):
    assert mask_email(address) == masked
