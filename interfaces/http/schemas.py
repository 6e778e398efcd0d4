"""JSON Schemas of the API: they validate requests, and `/openapi.json` is built from them."""

from __future__ import annotations

from typing import Any

from domain.job_definition import MAX_DESCRIPTION
from domain.tasks import HTTP_METHODS

Schema = dict[str, Any]

NAME: Schema = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._-]{1,200}$",
    "minLength": 1,
    "maxLength": 200,
}
INSTANT: Schema = {
    "type": "string",
    "format": "date-time",
    "examples": ["2026-02-04T14:30:00.000Z"],
}
ID: Schema = {"type": "string", "format": "uuid"}
ANY_JSON: Schema = {}

AUTH: Schema = {
    "type": "object",
    "properties": {
        "authMethod": {"enum": ["bearer", "basic"]},
        "token": {"type": "string", "writeOnly": True},
        "username": {"type": "string"},
        "password": {"type": "string", "writeOnly": True},
    },
    "required": ["authMethod"],
    "additionalProperties": False,
}
HTTP_TASK: Schema = {
    "type": "object",
    "description": "HttpInvokerTask: `url`, or `endpoint` + `path`. Strings may hold ${T±N:FORMAT}.",
    "properties": {
        "url": {"type": "string", "maxLength": 2048},
        "endpoint": {"type": "string", "maxLength": 2048},
        "path": {"type": "string", "maxLength": 2048},
        "method": {"enum": list(HTTP_METHODS) + [m.lower() for m in HTTP_METHODS]},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": ANY_JSON,
        "auth": AUTH,
        "timeout": {"type": "integer", "minimum": 1, "maximum": 86_400_000},
    },
    "additionalProperties": False,
}
FUNCTION_TASK: Schema = {
    "type": "object",
    "description": "FunctionTask: a registered function (see GET /functions) and its payload.",
    "properties": {
        "function": {"type": "string", "minLength": 1, "maxLength": 200},
        "payload": {"type": "object"},
        "timeout": {"type": "integer", "minimum": 1, "maximum": 86_400_000},
    },
    "required": ["function"],
    "additionalProperties": False,
}
RETRY: Schema = {
    "type": "object",
    "properties": {
        "maxRetries": {"type": "integer", "minimum": 0, "maximum": 100},
        "retryDelaySeconds": {"type": "integer", "minimum": 0, "maximum": 604_800},
        "backoff": {"enum": ["fixed", "exponential"]},
        "maxDelaySeconds": {"type": "integer", "minimum": 0, "maximum": 604_800},
    },
    "additionalProperties": False,
}
_JOB_FIELDS: Schema = {
    "applicationId": {"type": ["string", "integer"]},
    "name": NAME,
    "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION},
    "enabled": {"type": "boolean"},
    "pattern": {"type": "string", "minLength": 1, "maxLength": 200, "examples": ["0 2 * * *"]},
    "timezone": {"type": "string", "minLength": 1, "maxLength": 64, "examples": ["Europe/Berlin"]},
    "taskType": {"enum": ["HttpInvokerTask", "FunctionTask"]},
    "taskConfig": {"oneOf": [HTTP_TASK, FUNCTION_TASK]},
    "retry": RETRY,
    "concurrencyPolicy": {"enum": ["allow", "skip", "queue", "replace"]},
    "misfirePolicy": {"enum": ["skip", "runOnce", "runAll"]},
    "catchUpWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 604_800},
    "pauseAfterFailures": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
    "jitterSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
    "maxRetries": {"type": "integer", "minimum": 0, "maximum": 100, "deprecated": True},
    "retryDelaySeconds": {"type": "integer", "minimum": 0, "maximum": 604_800, "deprecated": True},
    "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 86_400, "deprecated": True},
    "catchUp": {"type": "boolean", "deprecated": True},
}
JOB_CREATE: Schema = {
    "type": "object",
    "properties": _JOB_FIELDS,
    "required": ["name", "pattern", "taskConfig"],
    "additionalProperties": False,
}
#: Read-only fields a client may send back unchanged from a GET (they are ignored on update).
READ_ONLY = ("id", "application", "createdAt", "createdBy", "updatedAt", "updatedBy", "version")
JOB_UPDATE: Schema = {
    "type": "object",
    "properties": {**_JOB_FIELDS, **{k: ANY_JSON for k in READ_ONLY}},
    "additionalProperties": False,
}
TRIGGER: Schema = {
    "type": "object",
    "description": "Optional: replaces taskConfig.body (HTTP) or taskConfig.payload (function) for this run.",
}
BACKFILL: Schema = {
    "type": "object",
    "properties": {"from": INSTANT, "to": INSTANT},
    "required": ["from", "to"],
    "additionalProperties": False,
}
APPLICATION: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "displayName": {"type": "string"},
    },
    "required": ["id", "name", "displayName"],
}
JOB: Schema = {
    "type": "object",
    "properties": {
        "id": ID,
        "application": APPLICATION,
        **{
            k: v
            for k, v in _JOB_FIELDS.items()
            if k
            not in (
                "applicationId",
                "maxRetries",
                "retryDelaySeconds",
                "timeoutSeconds",
                "catchUp",
            )
        },
        "createdAt": INSTANT,
        "createdBy": {"type": "string"},
        "updatedAt": INSTANT,
        "updatedBy": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
    },
    "required": [
        "id",
        "application",
        "name",
        "enabled",
        "pattern",
        "timezone",
        "taskType",
        "taskConfig",
        "version",
    ],
}
ERROR: Schema = {
    "type": ["object", "null"],
    "properties": {"message": {"type": "string"}, "code": {"type": "string"}},
}
EXECUTION: Schema = {
    "type": "object",
    "properties": {
        "id": ID,
        "jobId": ID,
        "jobVersion": {"type": "integer"},
        "status": {"enum": ["pending", "running", "succeeded", "failed"]},
        "trigger": {"enum": ["cron", "manual", "catch-up", "backfill"]},
        "scheduledFor": INSTANT,
        "startedAt": {"type": ["string", "null"]},
        "finishedAt": {"type": ["string", "null"]},
        "durationMs": {"type": ["integer", "null"]},
        "attempt": {"type": "integer"},
        "node": {"type": "string"},
        "nextAttemptAt": {"type": ["string", "null"]},
        "result": {"type": ["object", "null"]},
        "error": ERROR,
        "jobSnapshot": {"type": "object"},
        "createdAt": INSTANT,
        "createdBy": {"type": "string"},
        "version": {"type": "integer"},
    },
    "required": ["id", "jobId", "status", "trigger", "scheduledFor", "attempt"],
}
HISTORY_ENTRY: Schema = {
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "type": {"type": "string"},
        "time": INSTANT,
        "by": {"type": ["string", "null"]},
        "data": {"type": "object"},
    },
    "required": ["version", "type", "time", "by", "data"],
}
SLOT: Schema = {
    "type": "object",
    "properties": {
        "slot": INSTANT,
        "outcome": {"enum": ["pending", "running", "succeeded", "failed", "skipped", "undecided"]},
        "reason": {"type": "string"},
        "executionId": ID,
        "trigger": {"type": "string"},
    },
    "required": ["slot", "outcome"],
}
STATS: Schema = {
    "type": "object",
    "properties": {
        "jobs": {
            "type": "object",
            "properties": {"total": {"type": "integer"}, "enabled": {"type": "integer"}},
        },
        "engine": {
            "type": "object",
            "properties": {k: {"type": "integer"} for k in ("active", "running", "queued")},
        },
        "last24h": {"type": "object"},
        "durationMs": {"type": "object"},
        "projections": {"type": "object"},
    },
    "required": ["jobs", "engine", "last24h", "durationMs", "projections"],
}
FUNCTION: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "doc": {"type": "string"},
        "source": {"type": "string"},
    },
    "required": ["name"],
}
PREVIEW: Schema = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string"},
        "timezone": {"type": "string"},
        "next": {"type": "array", "items": INSTANT},
    },
    "required": ["pattern", "timezone", "next"],
}
PROBLEM: Schema = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
    "required": ["title", "status", "detail"],
}
