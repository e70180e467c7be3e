"""Airflow plugin: the mailtrace "Delivery" page.

The api-server mounts the FastAPI app at /mailtrace; the UI shows a "Delivery" entry in its top
navigation that opens the page inside Airflow (an external view with a `url_route`, rendered in a
frame at /plugin/delivery). The page requires an Airflow sign-in; see mailtrace.ui.auth.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mailtrace.ui.app import app

URL_PREFIX = "/mailtrace"


class MailtraceDeliveryPlugin(AirflowPlugin):
    name = "mailtrace_delivery"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "mailtrace delivery"}]
    external_views = [
        {
            "name": "Delivery",
            # Relative: the UI's <base href> is the api-server's base URL, so this also works
            # when Airflow is served under a path (https://host/airflow/mailtrace/).
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "url_route": "delivery",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
