"""Assets the DAGs share: declared once so every producer and consumer names the same one."""

from airflow.sdk import Asset

PROVIDER_EVENTS = Asset(name="mailtrace_provider_events", uri="mailtrace://warehouse/provider_event")
