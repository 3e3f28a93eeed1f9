"""Durable generation jobs: ``GenerationService`` (submit, get, wait) over ``JobRunner`` (leases, resume)."""

from core.generation.jobs import GenerationService
from core.generation.runner import JobRunner
from core.generation.views import ACTIVE, FINISHED, GenerationRequest, JobView, job_view

__all__ = ["ACTIVE", "FINISHED", "GenerationRequest", "GenerationService", "JobRunner", "JobView", "job_view"]
