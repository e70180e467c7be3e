"""Email goes out through smtp_default as text + HTML with attachments; headers cannot be injected."""

import traceback

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


class _QuotingSink:
    """An SMTP server that quotes the address word for word when it refuses it, as Postfix does."""

    def __init__(self, refused: set[str], refuse_data: bool = False):
        self.refused, self.refuse_data = refused, refuse_data
        self.delivered: list[list[str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.refuse_data:
            return f"554 5.7.1 <{envelope.rcpt_tos[0]}>: message refused by policy"
        self.delivered.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def quoting_smtp(monkeypatch):
    import json

    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    def start(refused: set[str], refuse_data: bool = False) -> _QuotingSink:
        sink = _QuotingSink(refused, refuse_data)
        controller = Controller(sink, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append(controller)
        extra = {"disable_tls": True, "disable_ssl": True, "from_email": "mailtrace@example.gov"}
        connection = {"conn_type": "smtp", "host": "127.0.0.1", "port": controller.port, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(connection))
        return sink

    controllers = []
    yield start
    for controller in controllers:
        controller.stop()


@pytest.mark.parametrize(
    ("refused", "refuse_data", "to"),
    [
        ({"someone@example.gov"}, False, ["someone@example.gov", "other@example.gov"]),  # some refused
        ({"someone@example.gov"}, False, ["someone@example.gov"]),  # all refused: smtplib raises
        (set(), True, ["someone@example.gov"]),  # the message itself refused, quoting the address
    ],
)
def test_a_server_quoting_addresses_in_its_refusal_never_gets_them_into_logs_or_errors(
    quoting_smtp, caplog, refused, refuse_data, to
):
    quoting_smtp(refused, refuse_data)
    with caplog.at_level("DEBUG"), pytest.raises(Exception) as raised:
        send_email(to=to, subject="Weekly report", text="body")
    error = raised.value
    # Everything but the SMTP server's own log (aiosmtpd's "mail.log", the other side of the wire).
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")
    # What a task log shows of the error: its traceback, chained exceptions included.
    text = logged + "".join(traceback.format_exception(error))
    assert "s***@example.gov" in str(error)
    for address in to:
        assert address not in text
    if refused:
        assert isinstance(error, RecipientsRefused) and "550 5.1.1" in str(error)
        assert error.accepted == [address for address in to if address not in refused]
