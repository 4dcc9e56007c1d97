"""The queue's one task: take a product through the pipeline.

Retries are not procrastinate's: the pipeline records a failure with the next attempt time our retry
policy decides (``ingest.retry``), and this task enqueues the product again for that time. The job
itself always succeeds unless the process fails around the pipeline, so the products table stays
the one record of what happened to a product. Whatever ends a job early is said in one line naming
the product (procrastinate's own "ended with status: Error" carries no cause: its traceback is
dropped from the logs).
"""

from __future__ import annotations

import logging
import threading

import procrastinate
from procrastinate import JobContext

from ingest.app import App
from ingest.errors import DatabaseUnavailable, StateConflict, first_line
from ingest.pipeline import Outcome
from ingest.settings import load_settings, scrub

log = logging.getLogger(__name__)
blueprint = procrastinate.Blueprint()
_local = threading.local()  # one App per worker thread: EODAG sessions and S3 clients are not shared


def _app() -> App:
    if getattr(_local, "app", None) is None:
        _local.app = App(load_settings())
    app: App = _local.app
    return app


@blueprint.task(name="process_product", pass_context=True)
def process_product(context: JobContext, product_id: str) -> str:
    app = _app()
    try:
        out = app.process(product_id, should_stop=context.should_abort)
    except StateConflict as exc:
        log.info("%s: skipped: %s", product_id, exc.message)  # done already, or held by another worker
        return "skipped"
    except DatabaseUnavailable as exc:  # at the claim: nothing was done, the product is still due
        log.warning(
            "%s: not started: %s; the reconciler queues it again", product_id, _said(app, exc),
            extra={"product_id": product_id, "stage": "claim", "cause": type(exc).__name__},
        )  # fmt: skip
        return "not started"
    except Exception as exc:
        log.error("%s: job failed: %s", product_id, _said(app, exc), exc_info=True)
        raise
    if out.released or out.next_attempt_at is not None:
        _enqueue_again(app, out)
    return "left" if out.left else str(out.state.value)


def _enqueue_again(app: App, out: Outcome) -> None:
    from ingest.adapters.queue import ProductQueue

    try:
        with ProductQueue(app.settings) as queue:
            queue.enqueue([out.product_id], schedule_at=out.next_attempt_at)  # None: at once
    except (DatabaseUnavailable, procrastinate.exceptions.ConnectorException) as exc:
        # it is due (released) or becomes due (failed): the reconciler's pass enqueues due products
        log.warning("%s: not queued again: %s; the reconciler will", out.product_id, _said(app, exc))


def _said(app: App, exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, procrastinate.exceptions.ConnectorException) and exc.__cause__ else exc
    return scrub(first_line(cause), *app.settings.secrets())
