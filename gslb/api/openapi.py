"""The OpenAPI 3.1 description of the ops api, served at `/v1/openapi.json`.

Pure data (standard library only). Written by hand so that it documents intent; a test holds
it equal to the routes the application registers (paths, methods and required roles).
"""

from __future__ import annotations

from typing import Any

from gslb import __version__

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

_ERROR = {"$ref": "#/components/responses/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _drain_ops(kind: str, param: str, about: str) -> dict[str, Any]:
    parameter = {
        "name": param,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": about,
    }
    drain = {
        "summary": f"Drain a {kind}: take it out of every answer",
        "operationId": f"drain_{kind}",
        "x-gslb-role": "operate",
        "security": BEARER,
        "parameters": [parameter],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DrainRequest"}}},
        },
        "responses": {
            "200": _json({"$ref": "#/components/schemas/DrainResult"}, "the drain is stored"),
            **_errors(400, 401, 403, 404, 409, 503),
        },
    }
    undrain = {
        "summary": f"Undrain a {kind}: remove its drain",
        "operationId": f"undrain_{kind}",
        "x-gslb-role": "operate",
        "security": BEARER,
        "parameters": [parameter],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UndrainRequest"}}},
        },
        "responses": {
            "200": _json(
                {"$ref": "#/components/schemas/UndrainResult"},
                "the drain is removed (or there was none: removed is null)",
            ),
            **_errors(400, 401, 403, 404, 503),
        },
    }
    return {"drain": drain, "undrain": undrain}


def _read(summary: str, operation: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation,
        "x-gslb-role": "read",
        "security": BEARER,
        "responses": {"200": _json(schema, "OK"), **_errors(400, 401, 403, 503)},
        **extra,
    }


def _query(name: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def spec() -> dict[str, Any]:
    """The whole OpenAPI document."""
    region = _drain_ops("region", "name", "a region name from the config, e.g. europe")
    datacenter = _drain_ops("datacenter", "name", "a datacenter name from the config, e.g. ams")
    endpoint = _drain_ops(
        "endpoint",
        "id",
        "an endpoint id SERVICE/DATACENTER/ADDRESS, e.g. www.gslb.example.com/ams/192.0.2.10; "
        "the slashes may be sent as they are or encoded as %2F",
    )
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gslb ops api",
            "version": __version__,
            "description": (
                "Drain and undrain regions, datacenters and endpoints; read the state every "
                "responder answers from; explain an answer; audit log; Prometheus metrics. "
                "Tokens: Authorization: Bearer <token>; roles read and operate (operate can "
                "read). Every error is a JSON object with error and message."
            ),
        },
        "paths": {
            "/": {
                "get": {
                    "summary": "Status page (HTML; its data calls ask for a read token)",
                    "operationId": "status_page",
                    "security": [],
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                }
            },
            "/static/{name}": {
                "get": {
                    "summary": "Status page assets (script, style, map)",
                    "operationId": "static_asset",
                    "security": [],
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "the file"}, **_errors(404)},
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": _json(obj, "OpenAPI 3.1")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (open unless api.metrics_require_token is set)",
                    "operationId": "metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format (OpenMetrics when asked)",
                            "content": {"text/plain": {}},
                        },
                        **_errors(401, 403),
                    },
                }
            },
            "/v1/whoami": {"get": _read("The token's name and role", "whoami", obj)},
            "/v1/state": {
                "get": _read(
                    "Datacenters, regions, services, endpoints (each prober's verdict, EWMA, "
                    "degraded), drains, versions and staleness",
                    "state",
                    {"$ref": "#/components/schemas/State"},
                )
            },
            "/v1/traffic": {
                "get": _read(
                    "Answers per second by datacenter and by responder over the last 15 minutes, "
                    "sampled from the responders' answer counters every 5 s by this api process",
                    "traffic",
                    {"$ref": "#/components/schemas/Traffic"},
                )
            },
            "/v1/explain": {
                "get": _read(
                    "Why a client gets the answer it gets (as gslb explain, with the live health)",
                    "explain",
                    obj,
                    parameters=[
                        _query("name", "the name asked, e.g. www.gslb.example.com", required=True),
                        _query("client", "the resolver's address (default: the caller's)"),
                        _query("ecs", "the client subnet the resolver sends, e.g. 193.0.14.0/24"),
                        _query("type", "A or AAAA (default A)", enum=["A", "AAAA"]),
                    ],
                )
            },
            "/v1/audit": {
                "get": _read(
                    "Recent operator actions, newest first",
                    "audit",
                    {
                        "type": "object",
                        "properties": {
                            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}
                        },
                    },
                    parameters=[_query("limit", "how many (1-1000, default 100)", pattern="^[0-9]+$")],
                )
            },
            "/v1/regions/{name}/drain": {"post": region["drain"]},
            "/v1/regions/{name}/undrain": {"post": region["undrain"]},
            "/v1/datacenters/{name}/drain": {"post": datacenter["drain"]},
            "/v1/datacenters/{name}/undrain": {"post": datacenter["undrain"]},
            "/v1/endpoints/{id}/drain": {"post": endpoint["drain"]},
            "/v1/endpoints/{id}/undrain": {"post": endpoint["undrain"]},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "an error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    time_ = {"type": ["string", "null"], "format": "date-time"}
    rate = {"type": ["number", "null"]}
    series = {"type": "array", "items": rate}
    drain = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["region", "datacenter", "endpoint"]},
            "target": {"type": "string"},
            "reason": {"type": "string"},
            "who": {"type": "string", "description": "TOKEN@SOURCE"},
            "token": {"type": "string"},
            "source": {"type": "string"},
            "created_at": time_,
            "expires_at": time_,
        },
    }
    timing = {
        "state_version": {
            "type": "integer",
            "description": "the state version after the write (the store version; gslb state's "
            "state_version, each responder's state_version)",
        },
        "effective_at": {**time_, "description": "when the store took the change"},
        "responders_by": {
            **time_,
            "description": "when every responder answers accordingly: reported by the responders "
            "(responders_reported: true) when every live one has applied the version, else this "
            "process's own apply time in embedded mode, else effective_at + state.poll_interval_s "
            "(pub/sub hints usually make it milliseconds)",
        },
        "responders_reported": {"type": "boolean"},
        "responders": {
            "type": ["object", "null"],
            "description": "the registered responders that answer from this version on (applied, "
            "with when), those that do not yet (pending) and stale ones (not_reporting); null "
            "when the store could not tell",
            "properties": {
                "applied": {"type": "array", "items": {"type": "object"}},
                "pending": {"type": "array", "items": {"type": "object"}},
                "not_reporting": {"type": "array", "items": {"type": "object"}},
            },
        },
        "caches_clear_by": {
            **time_,
            "description": "responders_by + the longest TTL of affected answers (the service "
            "TTL; for an undrain that ends NODATA answers, also the zone's negative TTL)",
        },
        "caches_clear_in_s": {"type": "number"},
        "ttl": {"type": "integer"},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "DrainRequest": {
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {
                "reason": {"type": "string", "minLength": 1, "maxLength": 500},
                "expires_in_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 31622400},
                "force": {
                    "type": "boolean",
                    "description": "drain even if a service would be left with nothing to answer",
                },
            },
        },
        "UndrainRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": {"type": "string", "maxLength": 500}},
        },
        "Drain": drain,
        "DrainResult": {
            "type": "object",
            "properties": {
                "action": {"const": "drain"},
                "target": {"type": "object"},
                "drain": {"$ref": "#/components/schemas/Drain"},
                "replaced": {"oneOf": [{"$ref": "#/components/schemas/Drain"}, {"type": "null"}]},
                "forced": {"type": "boolean"},
                "emptied": {"type": "array", "items": {"type": "object"}},
                "affected_services": {"type": "array", "items": {"type": "string"}},
                "affected_datacenters": {"type": "array", "items": {"type": "string"}},
                "affected_endpoints": {"type": "integer"},
                **timing,
            },
        },
        "UndrainResult": {
            "type": "object",
            "properties": {
                "action": {"const": "undrain"},
                "target": {"type": "object"},
                "removed": {"oneOf": [{"$ref": "#/components/schemas/Drain"}, {"type": "null"}]},
                "still_drained_by": {"type": "array", "items": {"$ref": "#/components/schemas/Drain"}},
                "affected_services": {"type": "array", "items": {"type": "string"}},
                "affected_datacenters": {"type": "array", "items": {"type": "string"}},
                "negative_ttl": {"type": ["integer", "null"]},
                **timing,
            },
        },
        "AuditEntry": {
            "type": "object",
            "properties": {
                "at": time_,
                "token": {"type": "string"},
                "source": {"type": "string"},
                "action": {"enum": ["drain", "undrain", "remove_prober"]},
                "target": {"type": "string", "description": "KIND:NAME"},
                "reason": {"type": "string"},
                "result": {"enum": ["applied", "refused", "not_drained"]},
                "detail": {"type": "string"},
            },
        },
        "Traffic": {
            "type": "object",
            "description": "Series are aligned with at (oldest first); a value is null when it is "
            "unknown (the store could not be read, or the responders were stale)",
            "properties": {
                "now": time_,
                "interval_s": {"type": "number", "description": "seconds between samples"},
                "window_s": {"type": "number", "description": "how far back the series go"},
                "at": {"type": "array", "items": {"type": "number"}, "description": "sample times, Unix s"},
                "total": {
                    "type": "object",
                    "properties": {"answers_per_s": rate, "series": series},
                },
                "datacenters": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "region": {"type": ["string", "null"]},
                            "answers_per_s": {**rate, "description": "the latest sample"},
                            "series": series,
                        },
                    },
                },
                "responders": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"enum": ["up", "stale", "stopped", "gone"]},
                            "answers_per_s": {**rate, "description": "the latest sample, all datacenters"},
                            "by_datacenter": {
                                "type": ["object", "null"],
                                "additionalProperties": {"type": "number"},
                            },
                            "series": series,
                        },
                    },
                },
            },
        },
        "State": {
            "type": "object",
            "properties": {
                "now": time_,
                "mode": {"enum": ["embedded", "distributed"]},
                "state_version": {
                    "type": "integer",
                    "description": "the store version of the state in use: the same number gslb drain "
                    "reports, each responder's state_version and gslb_state_version",
                },
                "view_generation": {
                    "type": "integer",
                    "description": "this process's count of health-view swaps (also moves when a drain "
                    "expires or a prober goes stale); gslb_state_view_generation",
                },
                "sync": {"type": "object"},
                "probers": {"type": "array", "items": {"type": "object"}},
                "stale_probers": {"type": "array", "items": {"type": "string"}},
                "hold": {
                    "type": "object",
                    "description": "No prober is fresh: the last verdicts hold (static stability)",
                    "properties": {
                        "holding": {"type": "boolean"},
                        "since": time_,
                        "age_s": {"type": ["number", "null"]},
                        "probers": {"type": "array", "items": {"type": "string"}},
                        "endpoints": {"type": "object", "additionalProperties": {"type": "string"}},
                        "released": {"type": "boolean"},
                        "hold_stale_s": {"type": ["number", "null"]},
                    },
                },
                "regions": {"type": "array", "items": {"type": "object"}},
                "datacenters": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "region": {"type": "string"},
                            "latitude": {"type": "number"},
                            "longitude": {"type": "number"},
                            "state": {
                                "enum": ["up", "degraded", "down", "drained"],
                                "description": "drained: a region or datacenter drain (drain), or "
                                "endpoint drains without which it would be eligible (endpoint_drains)",
                            },
                            "drain": {"oneOf": [{"$ref": "#/components/schemas/Drain"}, {"type": "null"}]},
                            "endpoint_drains": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Drain"},
                                "description": "the endpoint drains on its endpoints",
                            },
                        },
                    },
                },
                "services": {"type": "array", "items": {"type": "object"}},
                "endpoints": {
                    "type": "array",
                    "description": "each endpoint with its drain (any level) and each prober's verdict: "
                    "ewma_rtt_ms is null when the last check failed or the endpoint is down (a "
                    "failure counts as a full timeout), failure is then the check's words",
                    "items": {"type": "object"},
                },
                "drains": {"type": "array", "items": {"$ref": "#/components/schemas/Drain"}},
                "responders": {
                    "type": "array",
                    "description": "every registered responder: status (up, stale, stopped), "
                    "zone serials, config hash, last reload, state version applied, sync age, "
                    "answers per datacenter, problems",
                    "items": {"type": "object"},
                },
                "fleet": {
                    "type": "object",
                    "description": "across the live responders: zone serial drift, config drift, "
                    "failed reloads, stale responders, answers per second by datacenter, problems",
                },
            },
        },
    }
