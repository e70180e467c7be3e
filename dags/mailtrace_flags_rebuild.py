"""
### mailtrace_flags_rebuild

Manual: recompute every invalid-address flag from the verdicts (`mailtrace.delivery`) and
the contact table, as the incremental `update_address_flags` task of the pipeline would.

After correct incremental runs it finds nothing to change. Use it after repairing data by hand, or to
check the flags (**dry_run** reports the counts and rolls back). Any change it makes is recorded in
`mailtrace.flag_history` like every other flag set or cleared.

Connection: `mailtrace_warehouse`. Variable: `mailtrace_soft_failure_flag_threshold` (unset: only hard
bounces flag an address).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from mailtrace.dag_defaults import DEFAULT_ARGS, START_DATE


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mailtrace", "flags"],
    doc_md=__doc__,
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Count what a rebuild would set and clear, then roll back: nothing is written.",
        ),
    },
)
def mailtrace_flags_rebuild():
    @task
    def rebuild_address_flags(params=None) -> dict:
        from mailtrace.flags import rebuild_flags, threshold_from_settings
        from mailtrace.warehouse import apply_migrations, connect

        with connect() as conn:
            apply_migrations(conn)
            return rebuild_flags(
                conn, soft_failure_threshold=threshold_from_settings(), dry_run=bool(params["dry_run"])
            )

    rebuild_address_flags()


mailtrace_flags_rebuild()
