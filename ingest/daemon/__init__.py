"""Long-running processes: workers (procrastinate), the scheduler (APScheduler) and the reconciler."""
