"""The queue's one task: take a product through the pipeline.

Retries are not procrastinate's: the pipeline records a failure with the next attempt time our retry
policy decides (``ingest.retry``), and this task enqueues the product again for that time. The job
itself always succeeds unless the process fails around the pipeline, so the products table stays
the one record of what happened to a product.
"""

from __future__ import annotations

import logging
import threading

import procrastinate
from procrastinate import JobContext

from ingest.app import App
from ingest.errors import StateConflict
from ingest.settings import load_settings

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
    from ingest.adapters.queue import ProductQueue

    app = _app()
    try:
        out = app.process(product_id, should_stop=context.should_abort)
    except StateConflict as exc:
        log.info("%s: skipped: %s", product_id, exc.message)  # done already, or held by another worker
        return "skipped"
    if out.released:
        with ProductQueue(app.settings) as queue:
            queue.enqueue([product_id])
    elif out.next_attempt_at is not None:
        with ProductQueue(app.settings) as queue:
            queue.enqueue([product_id], schedule_at=out.next_attempt_at)
    return str(out.state.value)
