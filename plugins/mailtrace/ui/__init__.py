"""The Delivery page inside the Airflow UI (a FastAPI app mounted by the api-server)."""
